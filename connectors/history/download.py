"""`stressbot history download`: build replay files from public, keyless sources.

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
chunk whose period ended more than :data:`SETTLE_SECONDS` before it was fetched is final and
never fetched again; a younger chunk is reused for :data:`OPEN_CHUNK_MAX_AGE` seconds. So a
re-run with the same arguments fetches nothing, and an interrupted run continues where it
stopped. Requests are paced per host (a minimum interval between request starts), retried on
429, 5xx and network errors with capped exponential backoff with jitter (a ``Retry-After``
header is honoured), and every call has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import logging
import os
import random
import sys
import time as _time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from bot.core.errors import StressbotError
from bot.core.models import iso_utc

if TYPE_CHECKING:
    import aiohttp

    from connectors.history.ohlc import MarketSpec

DEFAULT_FRED_URL = "https://fred.stlouisfed.org/graph/fredgraph.csv"
#: A chunk fetched this long after its period ended is final (late revisions have landed).
SETTLE_SECONDS = 7 * 86400.0
#: A chunk that is not final yet is reused for this long before it is fetched again.
OPEN_CHUNK_MAX_AGE = 6 * 3600.0
#: Default minimum interval between two request starts to the same host, seconds.
DEFAULT_MIN_INTERVAL = 1.0
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "stressbot-history/0.1 (replay file builder)"

Progress = Callable[[str], None]
T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class HistoryDownloadError(StressbotError):
    """A replay file could not be built; the message says which source and what to do."""


class SourceUnavailable(HistoryDownloadError):
    """A source kept failing (HTTP errors, timeouts) or refused the request outright."""


class SourceFormatError(HistoryDownloadError):
    """A source answered with something that is not the format it is documented to send."""


# --------------------------------------------------------------------------- rows and reports


@dataclass(frozen=True, slots=True)
class Row:
    """One replay row: `value` of `symbol`, known at `ts` (epoch seconds, UTC)."""

    ts: float
    symbol: str
    value: float


@dataclass(slots=True)
class SymbolResult:
    """What one source produced for one symbol inside the window."""

    symbol: str
    source: str
    rows: list[Row] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def format_value(v: float) -> str:
    """The shortest text that reads back as `v` (``9600`` rather than ``9600.0``)."""
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def parse_value(text: str) -> float | None:
    """A published value, or None when missing (``.``/empty), non-numeric, not > 0."""
    t = text.strip()
    if t in ("", "."):
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    if v != v or v in (float("inf"), float("-inf")) or v <= 0:
        return None
    return v


# --------------------------------------------------------------------------- pacing and retries


class HostPacer:
    """Keeps a minimum interval between the starts of two requests to the same host.

    A host can also be put on hold (``defer``), e.g. for a ``Retry-After``: every request to it
    waits until then, not only the one that was refused.
    """

    def __init__(self, min_interval: float, per_host: Mapping[str, float] | None = None) -> None:
        self.min_interval = min_interval
        self.per_host = dict(per_host or {})
        self._locks: dict[str, asyncio.Lock] = {}
        self._next: dict[str, float] = {}

    def interval(self, host: str) -> float:
        return self.per_host.get(host, self.min_interval)

    async def wait(self, host: str) -> None:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            delay = self._next.get(host, 0.0) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next[host] = loop.time() + self.interval(host)

    def defer(self, host: str, seconds: float) -> None:
        """No request to `host` starts within the next `seconds`."""
        until = asyncio.get_running_loop().time() + seconds
        self._next[host] = max(self._next.get(host, 0.0), until)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; `attempts` counts the first try."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0
    #: a Retry-After longer than this is not waited for: the source is reported unavailable
    max_retry_after: float = 300.0

    def delay(self, failure: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failure`-th failure (0-based)."""
        ceiling = min(self.cap, self.base * 2.0**failure)
        jittered = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            return max(retry_after, 0.0) + random.uniform(0, min(1.0, self.base))
        return jittered


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (_time.time() if now is None else now))


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


async def with_retries(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    host: str,
    pacer: HostPacer,
    policy: RetryPolicy,
    classify: Callable[[BaseException], tuple[bool, float | None]],
    progress: Progress,
    pace: bool = True,
) -> T:
    """Run `attempt` (paced on `host`) until it succeeds or `policy` gives up.

    `classify(exc)` says whether an exception is worth retrying and the Retry-After it carried.
    With ``pace=False`` the attempt paces its own requests (ccxt calls the pacer itself, once
    per HTTP request); a retry delay still holds every request to `host`.
    """
    failure = 0
    while True:
        if pace:
            await pacer.wait(host)
        try:
            return await attempt()
        except Exception as e:
            retryable, retry_after = classify(e)
            if not retryable:
                raise
            if retry_after is not None and retry_after > policy.max_retry_after:
                raise SourceUnavailable(
                    f"{what}: {host} asks to retry after {retry_after:.0f} s "
                    f"(more than {policy.max_retry_after:.0f} s); run again later: "
                    "everything fetched so far is cached"
                ) from e
            if failure + 1 >= policy.attempts:
                raise SourceUnavailable(
                    f"{what}: still failing after {policy.attempts} attempts ({e}); "
                    "run again later (fetched chunks are cached) or raise --retries"
                ) from e
            delay = policy.delay(failure, retry_after)
            failure += 1
            progress(f"  {what}: {e}; retry {failure} in {delay:.1f} s")
            pacer.defer(host, delay)


class HttpStatusError(Exception):
    """A non-200 answer (internal: classified for retrying)."""

    def __init__(self, status: int, url: str, body: str, retry_after: float | None) -> None:
        self.status = status
        self.url = url
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} from {url}: {body[:200].strip()!r}")


class HttpClient:
    """GET with pacing per host, retries and a timeout on every call (aiohttp)."""

    def __init__(
        self,
        pacer: HostPacer,
        policy: RetryPolicy,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Progress | None = None,
    ) -> None:
        self.pacer = pacer
        self.policy = policy
        self.timeout = timeout
        self.progress: Progress = progress or (lambda _m: None)
        self.requests = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        import aiohttp

        t = aiohttp.ClientTimeout(
            total=self.timeout, sock_connect=self.timeout, sock_read=self.timeout
        )
        self._session = aiohttp.ClientSession(timeout=t, headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_text(self, url: str, params: Mapping[str, str], what: str) -> str:
        import aiohttp

        session = self._session
        if session is None:
            raise RuntimeError("HttpClient used outside 'async with'")

        async def attempt() -> str:
            self.requests += 1
            async with session.get(url, params=dict(params)) as resp:
                body = await resp.text(errors="replace")
                if resp.status == 200:
                    return body
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise HttpStatusError(resp.status, str(resp.url), body, retry_after)

        def classify(e: BaseException) -> tuple[bool, float | None]:
            if isinstance(e, HttpStatusError):
                if e.status == 429 or 500 <= e.status < 600:
                    return True, e.retry_after
                return False, None
            if isinstance(e, aiohttp.ClientError | TimeoutError):
                return True, None
            return False, None

        try:
            return await with_retries(
                what,
                attempt,
                host=host_of(url),
                pacer=self.pacer,
                policy=self.policy,
                classify=classify,
                progress=self.progress,
            )
        except HttpStatusError as e:
            raise SourceUnavailable(
                f"{what}: {e}; check the series/market name and the source URL"
            ) from e


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    env = os.environ.get("STRESSBOT_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/stressbot").expanduser()


class ChunkCache:
    """One file per fetched chunk; written atomically, judged fresh by when it was fetched."""

    def __init__(self, root: Path, now: Callable[[], float] = _time.time) -> None:
        self.root = root
        self.now = now

    def path(self, *parts: str) -> Path:
        safe = [p.replace("/", "-").replace("\\", "-").replace(":", "-") for p in parts]
        return self.root.joinpath(*safe)

    def _fresh(self, p: Path, period_end: float) -> bool:
        try:
            fetched = p.stat().st_mtime
        except FileNotFoundError:
            return False
        if fetched >= period_end + SETTLE_SECONDS:
            return True  # final
        return self.now() - fetched < OPEN_CHUNK_MAX_AGE

    async def load(self, p: Path, period_end: float) -> bytes | None:
        """The cached body, or None when absent or stale. `period_end`: epoch s the chunk ends."""

        def read() -> bytes | None:
            return p.read_bytes() if self._fresh(p, period_end) else None

        return await asyncio.to_thread(read)

    async def store(self, p: Path, body: bytes) -> None:
        await asyncio.to_thread(atomic_write_bytes, p, body)


def atomic_write_bytes(p: Path, body: bytes) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{random.randrange(1 << 30)}.tmp")
    try:
        tmp.write_bytes(body)
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------- options


def _default_markets() -> dict[str, MarketSpec]:
    from connectors.history.ohlc import DEFAULT_MARKETS

    return dict(DEFAULT_MARKETS)


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
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
    from connectors.history.fred_csv import FRED_SYMBOLS

    return sorted({*FRED_SYMBOLS, *(markets if markets is not None else _default_markets())})


@dataclass(slots=True)
class DownloadResult:
    results: list[SymbolResult]
    requests: int  # network requests made (0 when everything came from the cache)

    @property
    def rows(self) -> list[Row]:
        return [r for res in self.results for r in res.rows]


async def download(options: DownloadOptions) -> DownloadResult:
    """Fetch (or read from the cache) every requested symbol for the window."""
    from connectors.history import fred_csv, ohlc

    if options.end < options.start:
        raise HistoryDownloadError(f"--to {options.end} is before --from {options.start}")
    markets = dict(options.markets) if options.markets is not None else _default_markets()
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
    pacer = HostPacer(options.min_interval, options.host_intervals)
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
            matched, _rest = eg.split(HistoryDownloadError)
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


# --------------------------------------------------------------------------- CLI


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from e


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise HistoryDownloadError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _history_subparsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The `history` command's sub-commands, shared with other `history ...` registrations."""
    parser = sub.choices.get("history")
    if parser is None:
        parser = sub.add_parser("history", help="build replay files from public history")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="history_command", required=True, metavar="ACTION")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `history download` (argparse only; the sources load when the command runs)."""
    p = _history_subparsers(sub).add_parser(
        "download",
        help="build a replay file from public keyless sources (FRED, exchanges via ccxt)",
        description=(
            "Build a replay file (ts,symbol,value; ts = when each value became known) from "
            "FRED's keyless CSV download and exchange hourly bars through ccxt. FRED has no "
            "ICE dollar index (DXY) and no gold price: DXY is not produced (the engine derives "
            "its own dollar index USDX from the FX legs) and XAU/USD is tokenised gold "
            "(PAXG). Fetched chunks are cached, so a re-run fetches nothing new and an "
            "interrupted run resumes."
        ),
    )
    p.add_argument(
        "--from",
        dest="start",
        type=_date,
        required=True,
        metavar="DATE",
        help="first UTC day of ts (YYYY-MM-DD)",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=_date,
        required=True,
        metavar="DATE",
        help="last UTC day of ts, inclusive",
    )
    p.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYM",
        help="symbols to include (default: all: BTC/USD XAU/USD US2Y US10Y US30Y "
        "SOFR IORB EUR/USD USD/JPY GBP/USD USD/CAD USD/CHF USD/SEK SPX NDX "
        "N225 VIX)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="output file; gzip when it ends in .gz",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="cache directory (default $STRESSBOT_CACHE or ~/.cache/stressbot)",
    )
    p.add_argument(
        "--fred-url",
        default=DEFAULT_FRED_URL,
        metavar="URL",
        help=f"FRED CSV endpoint (default {DEFAULT_FRED_URL})",
    )
    p.add_argument(
        "--market",
        action="append",
        metavar="SYMBOL=EXCHANGE:MARKET",
        help="exchange market for a symbol, e.g. XAU/USD=kraken:PAXG/USD "
        "(defaults: BTC/USD=bitstamp:BTC/USD, XAU/USD=kraken:PAXG/USD). "
        "Append @ohlcv or @trades to force how bars are made; by default "
        "Kraken months older than its latest 720 bars are built from trades",
    )
    p.add_argument(
        "--exchange-url",
        action="append",
        metavar="EXCHANGE=URL",
        help="base URL of an exchange's REST API, e.g. kraken=http://127.0.0.1:8080",
    )
    p.add_argument(
        "--min-interval",
        type=float,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help=f"minimum time between requests to one host (default {DEFAULT_MIN_INTERVAL})",
    )
    p.add_argument(
        "--host-interval",
        action="append",
        metavar="HOST=SECONDS",
        help="minimum interval for one host (host[:port])",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"timeout of each request (default {DEFAULT_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries per request on 429/5xx/network errors (default 5)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run_download_command)


def options_from_args(args: argparse.Namespace, progress: Progress | None) -> DownloadOptions:
    from connectors.history.ohlc import DEFAULT_MARKETS, MarketSpec

    markets = dict(DEFAULT_MARKETS)
    for symbol, spec in _pairs(args.market, "--market").items():
        markets[symbol] = MarketSpec.parse(spec)
    try:
        pairs = _pairs(args.host_interval, "--host-interval")
        host_intervals = {h: float(v) for h, v in pairs.items()}
    except ValueError as e:
        raise HistoryDownloadError(f"--host-interval: seconds must be a number ({e})") from e
    if args.retries < 0:
        raise HistoryDownloadError("--retries must be 0 or more")
    return DownloadOptions(
        start=args.start,
        end=args.end,
        symbols=args.symbols,
        cache_dir=args.cache,
        fred_url=args.fred_url,
        markets=markets,
        exchange_urls=_pairs(args.exchange_url, "--exchange-url"),
        min_interval=args.min_interval,
        host_intervals=host_intervals,
        timeout=args.timeout,
        retry=RetryPolicy(attempts=args.retries + 1),
        progress=progress,
    )


async def run_download_command(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    opts = options_from_args(args, None if args.quiet else say)
    result = await download_to_file(opts, args.out)
    print(summary_table(result.results))
    print(
        f"wrote {len(replay_lines(result.rows)) - 1} rows to {args.out} "
        f"({result.requests} requests)"
    )
    return 0


__all__ = [
    "EPISODES",
    "ChunkCache",
    "DownloadOptions",
    "DownloadResult",
    "Episode",
    "HistoryDownloadError",
    "HostPacer",
    "HttpClient",
    "RetryPolicy",
    "Row",
    "SourceFormatError",
    "SourceUnavailable",
    "SymbolResult",
    "download",
    "download_to_file",
    "ensure_episode",
    "register",
    "write_replay",
]
