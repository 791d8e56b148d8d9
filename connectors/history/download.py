"""Build replay files from public, keyless sources (the `stressbot history download` command,
whose argparse part is :mod:`bot.cli.history`).

The output is exactly the replay format of the history README (``../shared/data/history``):
header ``ts,symbol,value``, ``ts`` ISO-8601 UTC with ``Z`` at second precision, rows sorted by
``ts`` then ``symbol``, gzip when the file name ends in ``.gz``. Every ``ts`` is the instant the
value became **known** in real time, so replaying rows in ``ts`` order has no look-ahead; a
value whose ``ts`` is still in the future when it is fetched (today's close before the close)
is not written.

Sources and order
-----------------
Each source is a module (its docstring has the URL, the format, what was verified and where,
and how each value is stamped); :mod:`connectors.history.sources` lists them and gives each
symbol its order, the default keyless source first:

=========  ================================  =============================================
symbol     sources, in order                 granularity, stamp
=========  ================================  =============================================
BTC/USD    bitstamp, kraken, coinbase        1h bars (ccxt), close at the bar end
XAU/USD    dukascopy, kraken (PAXG)          1h, bar end
XAG/USD    dukascopy                         1h, bar end
FX (6)     dukascopy, ecb, frb_h10           1h bar end / 16:00 Frankfurt / H.10 Monday
                                             16:15 New York after the week
DXY        yahoo (DX-Y.NYB)                  1d, 15:00 New York
US2Y..30Y  treasury                          1d, 16:00 New York
SOFR       nyfed                             1d, 08:00 New York, next publication day
IORB       frb (PRATES, IOER before          1d calendar, 00:00 New York on the effective
           2021-07-29)                       date
SPX, NDX   yahoo, dukascopy (CFD)            1d 16:00 New York / 1h bar end
N225       yahoo, dukascopy (CFD)            1d 15:00 Tokyo (15:30 from 2024-11-05) / 1h
VIX        yahoo                             1d, 16:15 New York
=========  ================================  =============================================

With ``FRED_API_KEY`` set the FRED API is the last resort of the symbols FRED has; FRED's
keyless CSV is opt-in (``--source SYMBOL=fred_csv``): it answers 403 to programmatic clients
since about 2026-05-30.

Failure isolation
-----------------
Sources run concurrently, each on its own: a source that fails (refused with 403 or 451,
unreachable, DNS, a 200 with an HTML interstitial, a truncated or empty body, a changed
schema, a 429 whose Retry-After is too long) is reported with its name, the status and what
to do, and costs only itself: its symbols go on to their next source. Before anything is
fetched every host is probed (DNS and TCP, a few seconds at most, all at once); a host that
cannot be reached fails its sources at once instead of after a round of retries, and when no
host can be reached at all :class:`NoNetwork` says so. The result carries one
:class:`SourceReport` per source tried: :func:`source_table` prints it (rows, chunks from the
cache, chunks fetched, and what failed and why).

Caching, resuming, pacing
-------------------------
Every fetched chunk (a year of a daily series, a month of hourly bars) is written atomically
into the cache directory (``--cache``, else ``$STRESSBOT_CACHE``, else ``~/.cache/stressbot``)
as soon as it arrives. A chunk whose period ended more than ``SETTLE_SECONDS`` before it was
fetched is final and never fetched again; a younger chunk is reused for
``OPEN_CHUNK_MAX_AGE`` seconds (both in :mod:`connectors.history.common`). So a re-run with
the same arguments fetches nothing, and an interrupted run continues where it stopped.
Requests are paced per host (a minimum interval between request starts), retried on 429, 5xx
and network errors with capped exponential backoff with jitter (a ``Retry-After`` header is
honoured), and every call has a timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot.core.models import iso_utc
from bot.core.pacing import KeyedPacer
from bot.core.retry import BackoffPolicy
from connectors.history import sources as registry
from connectors.history.common import (
    DEFAULT_MIN_INTERVAL,
    DEFAULT_TIMEOUT,
    DOWNLOAD_ERRORS,
    DOWNLOAD_RETRY,
    STATUS_HINTS,
    ChunkCache,
    HistoryDownloadError,
    HttpClient,
    NoNetwork,
    Progress,
    Row,
    Source,
    SourceContext,
    SourceUnavailable,
    SymbolResult,
    atomic_write_bytes,
    default_cache_dir,
    format_value,
    host_of,
    probe_hosts,
)
from connectors.history.ohlc import MarketSpec

log = logging.getLogger(__name__)

#: Seconds a host gets to accept a TCP connection in the probe before its sources are skipped.
PROBE_SECONDS = 3.0
#: Statuses after which a source is not asked for its other symbols in the same run.
REFUSED = (401, 403, 410, 451)

# --------------------------------------------------------------------------- options


@dataclass(slots=True)
class DownloadOptions:
    """Everything `download` needs. Dates are inclusive UTC days of `ts`."""

    start: date
    end: date
    symbols: Sequence[str] | None = None  # None: every symbol these sources provide
    cache_dir: Path | None = None
    #: source name (or ccxt exchange id) -> base URL, for mirrors, proxies and tests
    source_urls: Mapping[str, str] = field(default_factory=dict)
    #: symbol -> the sources to try, in order (default: sources.DEFAULT_ORDER)
    sources: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: symbol -> one exchange market: the symbol's only source unless `sources` names others
    markets: Mapping[str, MarketSpec] | None = None
    fred_url: str | None = None  # FRED's keyless CSV (opt-in source "fred_csv")
    exchange_urls: Mapping[str, str] = field(default_factory=dict)  # ccxt id -> base URL
    min_interval: float = DEFAULT_MIN_INTERVAL
    host_intervals: Mapping[str, float] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    retry: BackoffPolicy = DOWNLOAD_RETRY
    progress: Progress | None = None
    probe: bool = True  # probe every host first (DNS + TCP); unreachable ones are skipped
    #: called with each symbol's rows as soon as a source has served it (the backfill writes
    #: them at once, so a time limit keeps what was fetched)
    on_result: Callable[[SymbolResult], Awaitable[None]] | None = None
    clock: float | None = None  # "now" (epoch s); None: the wall clock

    @property
    def window(self) -> tuple[float, float]:
        """[first, last] second of the window, epoch seconds UTC, inclusive."""
        a = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
        b = datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC) + timedelta(
            days=1, seconds=-1
        )
        return a, b.timestamp()

    def url_of(self, source: Source) -> str:
        urls = {**self.exchange_urls, **self.source_urls}
        if self.fred_url and "fred_csv" not in urls:
            urls["fred_csv"] = self.fred_url
        return urls.get(source.name, source.url)


def supported_symbols(markets: Mapping[str, MarketSpec] | None = None) -> list[str]:
    return sorted({*registry.supported_symbols(), *(markets or {})})


@dataclass(slots=True)
class SourceReport:
    """What one source did in a download: for the per-source table."""

    source: str
    symbols: list[str]
    rows: int = 0
    cached: int = 0
    fetched: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # symbol -> why it failed
    status: int | None = None
    network: bool = False
    served: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """The first failure, or None when nothing failed."""
        return next(iter(self.errors.values()), None)

    @property
    def outcome(self) -> str:
        """ok, no data, or FAILED with the status and what to do (the first 140 characters)."""
        why = self.error
        if why is None:
            return "ok" if self.served else "no data"
        if self.status is not None and self.status in STATUS_HINTS:
            why = f"HTTP {self.status}: {STATUS_HINTS[self.status]}"
        if self.served:
            failed = ", ".join(self.errors)
            why = f"{failed}: {why}"
        why = why if len(why) <= 140 else why[:137] + "..."
        return ("partly FAILED: " if self.served else "FAILED: ") + why


@dataclass(slots=True)
class DownloadResult:
    results: list[SymbolResult]
    requests: int  # network requests made (0 when everything came from the cache)
    reports: list[SourceReport] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        return [r for res in self.results for r in res.rows]

    @property
    def missing(self) -> list[str]:
        """Symbols no source could fill."""
        return [r.symbol for r in self.results if not r.rows]

    @property
    def offline(self) -> bool:
        """Every source tried failed because its host could not be reached."""
        return bool(self.reports) and all(r.network and not r.served for r in self.reports)


def _plan(
    options: DownloadOptions,
) -> tuple[list[str], dict[str, list[str]], dict[str, MarketSpec]]:
    markets = dict(options.markets or {})
    supported = supported_symbols(markets)
    wanted = list(dict.fromkeys(options.symbols)) if options.symbols else supported
    unknown = [s for s in wanted if s not in supported]
    if unknown:
        raise HistoryDownloadError(
            f"no keyless source for {', '.join(unknown)}; available: {', '.join(supported)}"
        )
    fred_key = registry.fred_key_set()
    orders = {
        s: registry.source_order(s, options.sources, markets, fred_key=fred_key) for s in wanted
    }
    for s in options.sources:
        if s in orders:
            registry.check_order(s, orders[s], markets)
    return wanted, orders, markets


def _failure(e: BaseException) -> tuple[str, int | None, bool]:
    if isinstance(e, SourceUnavailable):
        return str(e), e.status, e.network
    if isinstance(e, DOWNLOAD_ERRORS):
        return str(e), None, False
    return f"unexpected {type(e).__name__}: {e} (a changed answer? please report it)", None, False


async def download(options: DownloadOptions) -> DownloadResult:
    """Fetch (or read from the cache) every requested symbol for the window, each from the
    first of its sources that has it; never raises for a failing source (see the reports)."""
    if options.end < options.start:
        raise HistoryDownloadError(f"--to {options.end} is before --from {options.start}")
    wanted, orders, markets = _plan(options)
    progress = options.progress or (lambda _m: None)
    pacer = KeyedPacer(options.min_interval, options.host_intervals)
    cache = ChunkCache(options.cache_dir or default_cache_dir())
    now = options.clock if options.clock is not None else time.time()
    named = {n: registry.source_named(n, markets) for order in orders.values() for n in order}

    unreachable: dict[str, str] = {}
    if options.probe:
        urls = [options.url_of(src) or _ccxt_url(src.name) for src in named.values()]
        found = await probe_hosts([u for u in urls if u], PROBE_SECONDS)
        unreachable = {h: why for h, why in found.items() if why is not None}

    results: dict[str, SymbolResult] = {}
    reports: list[SourceReport] = []
    tried: dict[str, list[str]] = {s: [] for s in wanted}  # symbol -> why earlier sources failed
    refused: dict[str, str] = {}  # source -> why it is not asked again in this run
    pending = {s: list(o) for s, o in orders.items()}
    async with HttpClient(pacer, options.retry, options.timeout, progress) as http:

        async def run(
            src: Source, symbols: list[str]
        ) -> tuple[SourceReport, dict[str, SymbolResult]]:
            report = SourceReport(src.name, symbols)
            url = options.url_of(src)
            ctx = SourceContext(http, cache, url, options.window, progress, now)
            host = host_of(url or _ccxt_url(src.name))
            got: dict[str, SymbolResult] = {}
            if host in unreachable:
                refused[src.name] = (
                    f"{src.name}: {unreachable[host]}; no network, or the host is down"
                )
                report.network = True
            elif src.name not in refused:
                progress(f"{src.name}: {', '.join(symbols)} ...")
            for sym in symbols:  # one at a time: one series failing costs only itself
                if src.name in refused:  # refused or unreachable: not asked again in this run
                    report.errors[sym] = refused[src.name]
                    continue
                try:
                    got.update(await src.fetch(ctx, [sym]))
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    why, status, network = _failure(e)
                    report.errors[sym] = why
                    report.status = report.status or status
                    report.network = report.network or network
                    if not isinstance(e, DOWNLOAD_ERRORS):
                        log.debug("history source %s failed", src.name, exc_info=True)
                    progress(f"{src.name}: {sym}: FAILED: {why}")
                    if network or status in REFUSED:
                        refused[src.name] = why
                    continue
                res = got.get(sym)
                if options.on_result is not None and res is not None and res.rows:
                    await options.on_result(res)  # at once: nothing slower holds it up
            report.cached, report.fetched = ctx.tally.cached, ctx.tally.fetched
            return report, got

        while pending:
            by_source: dict[str, list[str]] = {}
            for sym, order in pending.items():
                by_source.setdefault(order.pop(0), []).append(sym)
            done = await asyncio.gather(*(run(named[n], syms) for n, syms in by_source.items()))
            for report, got in done:
                reports.append(report)
                for sym in report.symbols:
                    res = got.get(sym)
                    if res is not None and res.rows:
                        res.notes = [*tried[sym], *res.notes]
                        results[sym] = res
                        report.served.append(sym)
                        report.rows += len(res.rows)
                        pending.pop(sym, None)
                        continue
                    why = report.errors.get(sym) or (
                        "; ".join(res.notes) if res and res.notes else "no values in the window"
                    )
                    tried[sym].append(f"{report.source}: {why}")
                    if not pending.get(sym):
                        pending.pop(sym, None)
                        empty = SymbolResult(sym, "-", skipped=res.skipped if res else 0)
                        empty.notes = tried[sym] or ["no source configured"]
                        results[sym] = empty
        requests = http.requests
    for sym in wanted:  # a symbol without any source
        results.setdefault(sym, SymbolResult(sym, "-", notes=["no source configured"]))
    return DownloadResult([results[s] for s in wanted], requests, reports)


#: REST hosts of the exchanges in the default orders, for the probe (others are not probed)
CCXT_HOSTS = {
    "bitstamp": "https://www.bitstamp.net",
    "kraken": "https://api.kraken.com",
    "coinbase": "https://api.coinbase.com",
    "binance": "https://api.binance.com",
    "okx": "https://www.okx.com",
}


def _ccxt_url(exchange: str) -> str:
    return CCXT_HOSTS.get(exchange, "")


# --------------------------------------------------------------------------- output


def replay_lines(rows: Iterable[Row]) -> list[str]:
    """Replay CSV lines (with header): duplicates (symbol, ts) keep the last, sorted."""
    last: dict[tuple[str, str], float] = {}
    for r in rows:
        last[(iso_utc(r.ts), r.symbol)] = r.value
    lines = ["ts,symbol,value"]
    lines += [f"{ts},{sym},{format_value(v)}" for (ts, sym), v in sorted(last.items())]
    return lines


def write_replay(rows: Iterable[Row], out: Path) -> int:
    """Write a replay file atomically (gzip when `out` ends in .gz). Returns the row count."""
    lines = replay_lines(rows)
    text = "\n".join(lines) + "\n"
    data = text.encode()
    if out.name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    atomic_write_bytes(out, data)
    return len(lines) - 1


def summary_table(results: Sequence[SymbolResult]) -> str:
    head = ("symbol", "source", "rows", "first ts", "last ts", "skipped")
    body = []
    for r in results:
        ts = sorted(x.ts for x in r.rows)
        body.append(
            (
                r.symbol,
                r.source,
                str(len(r.rows)),
                iso_utc(ts[0]) if ts else "-",
                iso_utc(ts[-1]) if ts else "-",
                str(r.skipped),
            )
        )
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *body]
    ]
    for r in results:
        for n in r.notes:
            out.append(f"note: {r.symbol}: {n}")
    return "\n".join(out)


async def download_to_file(options: DownloadOptions, out: Path) -> DownloadResult:
    result = await download(options)
    await asyncio.to_thread(write_replay, result.rows, out)
    return result


def source_table(reports: Sequence[SourceReport]) -> str:
    """One line per source tried: what it served, from where, and what failed and why."""
    head = ("source", "symbols", "rows", "cached", "fetched", "result")
    body = []
    for r in reports:
        served = ", ".join(r.served) if r.served else ", ".join(r.symbols)
        body.append((r.source, served, str(r.rows), str(r.cached), str(r.fetched), r.outcome))
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in [head, *body]
    )


__all__ = [
    "DownloadOptions",
    "DownloadResult",
    "NoNetwork",
    "SourceReport",
    "download",
    "download_to_file",
    "replay_lines",
    "source_table",
    "summary_table",
    "supported_symbols",
    "write_replay",
]
