"""Build replay files from public, keyless sources (the `stressbot history download` command,
whose argparse part is :mod:`bot.cli.history`).

The output is exactly the replay format of the history README (``../shared/data/history``):
header ``ts,symbol,value``, ``ts`` ISO-8601 UTC with ``Z`` at second precision, rows sorted by
``ts`` then ``symbol``, gzip when the file name ends in ``.gz``. Every ``ts`` is the instant the
value became **known** in real time, so replaying rows in ``ts`` order has no look-ahead.

Sources
-------
* Hourly bars from crypto exchanges through ccxt (async): BTC/USD (default Bitstamp ``BTC/USD``)
  and tokenised gold (default Kraken ``PAXG/USD``) published as ``XAU/USD``. Exchange and market
  are configurable per symbol (``--market XAU/USD=kraken:PAXG/USD``). See
  :mod:`connectors.history.ohlc`.
* FRED's keyless CSV download (``fredgraph.csv``). See :mod:`connectors.history.fred_csv`.

FRED has **no ICE dollar index (DXY)** and **no gold price**: DXY is not produced here (the engine
derives its own dollar index, USDX, from the FX legs), gold comes from PAXG. XAG/USD is not
available from these sources either.

When each value is known (``ts``)
---------------------------------
All local times are converted to UTC with ``zoneinfo`` (DST aware).

=========  ==================  ===========================================================
symbol     source              ts (when the value became known)
=========  ==================  ===========================================================
BTC/USD    ccxt 1h bars        bar close, stamped at the bar END = open + 1 h (UTC)
XAU/USD    ccxt 1h bars PAXG   bar close, stamped at the bar END = open + 1 h (UTC); Kraken
                               months beyond its latest 720 bars are built from its public
                               trades (close = the hour's last trade)
US2Y       FRED DGS2           date D 16:00 America/New_York (CMT yields, published after close)
US10Y      FRED DGS10          date D 16:00 America/New_York
US30Y      FRED DGS30          date D 16:00 America/New_York
SOFR       FRED SOFR           business date D: 08:00 America/New_York on the next date on
                               which SOFR itself is published (the next row with a value;
                               for the newest row, the next weekday)
IORB       FRED IORB / IOER    effective date D: 00:00 America/New_York on D. FRED IORB from
                               2021-07-29 (when it started), FRED IOER before that
SPX        FRED SP500          date D 16:00 America/New_York (cash close)
NDX        FRED NASDAQ100      date D 16:00 America/New_York (cash close)
N225       FRED NIKKEI225      date D 15:00 Asia/Tokyo (TSE close; 15:30 from 2024-11-05,
                               when the TSE extended its afternoon session)
VIX        FRED VIXCLS         date D 16:15 America/New_York (Cboe computes it until 16:15)
EUR/USD    FRED DEXUSEU        date D 12:00 America/New_York (H.10 noon buying rates)
USD/JPY    FRED DEXJPUS        date D 12:00 America/New_York
GBP/USD    FRED DEXUSUK        date D 12:00 America/New_York
USD/CAD    FRED DEXCAUS        date D 12:00 America/New_York
USD/CHF    FRED DEXSZUS        date D 12:00 America/New_York
USD/SEK    FRED DEXSDUS        date D 12:00 America/New_York
=========  ==================  ===========================================================

The FX noon rates are certified at noon but the Fed publishes H.10 weekly; noon of D is the
convention used (the rate is a fact of that instant), as the README does for CMT yields.

Dropped and counted as *skipped* (only when the row's ``ts`` falls inside the window): missing
(``.`` or empty), non-numeric, zero or negative values; weekend-dated rows of weekday-only daily
sources; bars of an exchange with a bad close. Holidays are simply absent.

Caching, resuming, pacing
-------------------------
Every fetched chunk (FRED: one file per series and calendar year; exchanges: one file per
exchange, market, timeframe and UTC month) is written atomically into the cache directory
(``--cache``, else ``$STRESSBOT_CACHE``, else ``~/.cache/stressbot``) as soon as it arrives. A
chunk whose period ended more than ``SETTLE_SECONDS`` before it was fetched is final and
never fetched again; a younger chunk is reused for ``OPEN_CHUNK_MAX_AGE`` seconds (both in
:mod:`connectors.history.common`). So a re-run with the same arguments fetches nothing, and
an interrupted run continues where it stopped. Requests are paced per host (a minimum interval
between request starts), retried on 429, 5xx and network errors with capped exponential
backoff with jitter (a ``Retry-After`` header is honoured), and every call has a timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot.core.models import iso_utc
from bot.core.pacing import KeyedPacer
from bot.core.retry import BackoffPolicy
from connectors.history import fred_csv, ohlc
from connectors.history.common import (
    DEFAULT_FRED_URL,
    DEFAULT_MIN_INTERVAL,
    DEFAULT_TIMEOUT,
    DOWNLOAD_ERRORS,
    DOWNLOAD_RETRY,
    ChunkCache,
    HistoryDownloadError,
    HttpClient,
    Progress,
    Row,
    SymbolResult,
    atomic_write_bytes,
    default_cache_dir,
    format_value,
)
from connectors.history.ohlc import DEFAULT_MARKETS, MarketSpec

# --------------------------------------------------------------------------- options


@dataclass(slots=True)
class DownloadOptions:
    """Everything `download` needs. Dates are inclusive UTC days of `ts`."""

    start: date
    end: date
    symbols: Sequence[str] | None = None  # None: every symbol these sources provide
    cache_dir: Path | None = None
    fred_url: str = DEFAULT_FRED_URL
    markets: Mapping[str, MarketSpec] | None = None  # symbol -> exchange market; None: defaults
    exchange_urls: Mapping[str, str] = field(default_factory=dict)  # exchange id -> base URL
    min_interval: float = DEFAULT_MIN_INTERVAL
    host_intervals: Mapping[str, float] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    retry: BackoffPolicy = DOWNLOAD_RETRY
    progress: Progress | None = None

    @property
    def window(self) -> tuple[float, float]:
        """[first, last] second of the window, epoch seconds UTC, inclusive."""
        a = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
        b = datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC) + timedelta(
            days=1, seconds=-1
        )
        return a, b.timestamp()


def supported_symbols(markets: Mapping[str, MarketSpec] | None = None) -> list[str]:
    return sorted({*fred_csv.FRED_SYMBOLS, *(markets if markets is not None else DEFAULT_MARKETS)})


@dataclass(slots=True)
class DownloadResult:
    results: list[SymbolResult]
    requests: int  # network requests made (0 when everything came from the cache)

    @property
    def rows(self) -> list[Row]:
        return [r for res in self.results for r in res.rows]


async def download(options: DownloadOptions) -> DownloadResult:
    """Fetch (or read from the cache) every requested symbol for the window."""
    if options.end < options.start:
        raise HistoryDownloadError(f"--to {options.end} is before --from {options.start}")
    markets = dict(options.markets) if options.markets is not None else dict(DEFAULT_MARKETS)
    supported = supported_symbols(markets)
    wanted = list(dict.fromkeys(options.symbols)) if options.symbols else supported
    unknown = [s for s in wanted if s not in supported]
    if unknown:
        raise HistoryDownloadError(
            f"no keyless source for {', '.join(unknown)}; available: {', '.join(supported)} "
            "(FRED has no ICE DXY and no gold price: the engine derives USDX from the FX legs, "
            "and XAU/USD comes from tokenised gold on an exchange)"
        )
    progress = options.progress or (lambda _m: None)
    pacer = KeyedPacer(options.min_interval, options.host_intervals)
    cache = ChunkCache(options.cache_dir or default_cache_dir())
    results: dict[str, SymbolResult] = {}

    fred_wanted = [s for s in wanted if s in fred_csv.FRED_SYMBOLS and s not in markets]
    by_exchange: dict[str, list[str]] = {}
    for s in wanted:
        if s in markets:
            by_exchange.setdefault(markets[s].exchange, []).append(s)

    async with HttpClient(pacer, options.retry, options.timeout, progress) as http:
        exchange_requests: list[int] = []

        async def fred_job(symbol: str) -> None:
            results[symbol] = await fred_csv.fetch_symbol(
                http,
                cache,
                symbol,
                options.start,
                options.end,
                options.window,
                base_url=options.fred_url,
                progress=progress,
            )

        async def exchange_job(exchange: str, symbols: list[str]) -> None:
            async with ohlc.ExchangeClient(
                exchange,
                base_url=options.exchange_urls.get(exchange),
                pacer=pacer,
                policy=options.retry,
                timeout=options.timeout,
                progress=progress,
            ) as client:
                try:
                    for symbol in symbols:  # one at a time: ccxt keeps per-instance response state
                        results[symbol] = await ohlc.fetch_symbol(
                            client,
                            cache,
                            symbol,
                            markets[symbol],
                            options.window,
                            progress=progress,
                        )
                finally:
                    exchange_requests.append(client.requests)

        try:
            async with asyncio.TaskGroup() as tg:
                for ex, syms in by_exchange.items():
                    tg.create_task(exchange_job(ex, syms))
                for s in fred_wanted:
                    tg.create_task(fred_job(s))
        except ExceptionGroup as eg:
            # report the first actionable error; whatever was fetched is cached for the re-run
            matched, _rest = eg.split(DOWNLOAD_ERRORS)
            if matched is None:
                raise
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from eg
        requests = http.requests + sum(exchange_requests)
    return DownloadResult([results[s] for s in wanted], requests)


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


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True, slots=True)
class Episode:
    """A stress episode: the window of interest and the lead-in that warms the rule windows."""

    start: date
    end: date
    lead_in_days: int = 10

    @property
    def download_from(self) -> date:
        return self.start - timedelta(days=self.lead_in_days)


#: 10 calendar days of lead-in: at least 6 weekday closes before the start even across a
#: Monday holiday (2020-02-17 Presidents' Day), so 5-day windows of daily series are warm
#: when the episode begins; hourly series get 240 bars.
EPISODES: dict[str, Episode] = {
    "312": Episode(date(2020, 2, 20), date(2020, 4, 10)),
    "519": Episode(date(2021, 5, 5), date(2021, 5, 31)),
}


async def ensure_episode(
    name: str = "312",
    cache_dir: Path | None = None,
    *,
    fred_url: str = DEFAULT_FRED_URL,
    markets: Mapping[str, MarketSpec] | None = None,
    exchange_urls: Mapping[str, str] | None = None,
    min_interval: float = DEFAULT_MIN_INTERVAL,
    progress: Progress | None = None,
) -> Path:
    """A replay file of episode `name` in the cache, downloaded first when missing.

    The file covers ``start - lead_in .. end`` (see :data:`EPISODES`) and lives at
    ``<cache>/episodes/episode-<name>_<from>_<to>.csv``. The keyword arguments point the
    download at other endpoints (tests) and are not part of the file's identity. Progress goes
    to `progress`, else to this module's logger at INFO. A first download makes a few dozen
    requests (about a minute at the default pacing of one request per second per host).
    """
    ep = EPISODES.get(name)
    if progress is None:
        progress = logging.getLogger(__name__).info
    if ep is None:
        raise HistoryDownloadError(
            f"unknown episode {name!r}; known: {', '.join(sorted(EPISODES))}"
        )
    root = cache_dir or default_cache_dir()
    out = root / "episodes" / f"episode-{name}_{ep.download_from}_{ep.end}.csv"
    if out.exists():
        return out
    opts = DownloadOptions(
        start=ep.download_from,
        end=ep.end,
        cache_dir=root,
        fred_url=fred_url,
        markets=markets,
        exchange_urls=dict(exchange_urls or {}),
        min_interval=min_interval,
        progress=progress,
    )
    await download_to_file(opts, out)
    return out


__all__ = [
    "EPISODES",
    "DownloadOptions",
    "DownloadResult",
    "Episode",
    "download",
    "download_to_file",
    "ensure_episode",
    "replay_lines",
    "summary_table",
    "supported_symbols",
    "write_replay",
]
