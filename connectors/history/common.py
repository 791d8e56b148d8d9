"""What every history source shares: errors, rows, HTTP client, pacing, retries, chunk cache.

:mod:`connectors.history.download` drives the sources (one module each: ``treasury``,
``nyfed``, ``frb``, ``ecb``, ``dukascopy``, ``yahoo``, ``fred_api``, ``fred_csv``, ``ohlc``,
listed in :mod:`connectors.history.sources`); they all build on this module and none of them
imports the driver. Requests are paced per host (:class:`bot.core.pacing.KeyedPacer`), retried
on 429, 5xx and network errors with capped exponential backoff with jitter
(:data:`DOWNLOAD_RETRY`, :func:`with_retries` over :func:`bot.core.retry.retry_async`; a
``Retry-After`` header is honoured, :func:`bot.core.retry_after.parse_retry_after`) and every
call has a timeout (:class:`HttpClient`). Fetched chunks live in :class:`ChunkCache`, written
atomically; :meth:`SourceContext.chunk` is the one "cached, else fetched, parsed, then cached"
step every source uses, and counts what came from where for the per-source table.

What a source answers instead of data is an error naming the source, the status and what to
do (:class:`SourceUnavailable`, :class:`connectors.fred_format.SourceFormatError`): a 403 or
451 (refused, not retried: FRED's keyless CSV has answered 403 to programmatic clients since
about 2026-05-30, quantmod issue #453; Binance answers 451 "restricted location" from the US
and some clouds, ccxt issues #16044), a 200 whose body is an HTML page (a consent, challenge
or proof-of-work interstitial, as Stooq serves to non-browser clients), a body that is empty
or cut short, a schema that changed. :func:`probe_hosts` tells in a few seconds whether a
host can be reached at all (DNS and TCP), so an offline run fails fast instead of retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import threading
import time as _time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from bot.core.errors import StressbotError
from bot.core.pacing import KeyedPacer
from bot.core.retry import BackoffPolicy, RetriesExhausted, RetryAfterTooLong, retry_async
from bot.core.retry_after import parse_retry_after
from connectors.fred_format import SourceFormatError

if TYPE_CHECKING:
    import aiohttp

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
    """A source kept failing (HTTP errors, timeouts) or refused the request outright.

    `status` is the HTTP status when there was one; `network` is true when the host could not
    be reached at all (DNS, connection refused, timeouts)."""

    def __init__(self, message: str, *, status: int | None = None, network: bool = False):
        super().__init__(message)
        self.status = status
        self.network = network


class NoNetwork(HistoryDownloadError):
    """No source could be reached at all (DNS failures, connections refused)."""


#: What to do about a refusal, by HTTP status.
STATUS_HINTS = {
    401: "the source wants credentials: set its key, or use the next source",
    403: "the source refuses programmatic clients (HTTP 403): use the next source for the "
    "symbol or a keyed option (FRED_API_KEY for FRED)",
    404: "not found: check the series/market name and the source URL",
    410: "the endpoint is gone: the source changed; use the next source",
    451: "not served from this location (HTTP 451, e.g. Binance from the US and some "
    "clouds): use another exchange for the symbol",
}


#: What a failed download raises: its own errors and a source's answer in the wrong format.
DOWNLOAD_ERRORS: tuple[type[StressbotError], ...] = (HistoryDownloadError, SourceFormatError)


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


# --------------------------------------------------------------------------- pacing and retries


#: The downloader's retries: 6 tries, 1 s doubling to 60 s (jittered down by up to half), and
#: a Retry-After over 5 minutes is not waited for (the source is reported unavailable).
DOWNLOAD_RETRY = BackoffPolicy(
    initial=1.0, max=60.0, multiplier=2.0, jitter=0.5, attempts=6, max_retry_after=300.0
)


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


async def with_retries(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    host: str,
    pacer: KeyedPacer,
    policy: BackoffPolicy,
    classify: Callable[[BaseException], tuple[bool, float | None]],
    progress: Progress,
    pace: bool = True,
) -> T:
    """Run `attempt` (paced on `host`) with :func:`bot.core.retry.retry_async` under `policy`.

    `classify(exc)` says whether an exception is worth retrying and the Retry-After it carried.
    With ``pace=False`` the attempt paces its own requests (ccxt calls the pacer itself, once
    per HTTP request). A retry delay holds every request to `host`, not only this one. When
    the retries give up, the error is a :class:`SourceUnavailable` saying what to do.
    """

    async def paced() -> T:
        if pace:
            await pacer.wait(host)
        return await attempt()

    async def hold_host(delay: float) -> None:
        pacer.defer(host, delay)
        await asyncio.sleep(delay)

    try:
        return await retry_async(
            paced,
            policy=policy,
            retryable=lambda e: classify(e)[0],
            retry_after=lambda e: classify(e)[1],
            on_retry=lambda e, n, delay: progress(f"  {what}: {e}; retry {n} in {delay:.1f} s"),
            sleep=hold_host,
            what=what,
        )
    except RetryAfterTooLong as e:
        raise SourceUnavailable(
            f"{what}: {host} asks to retry after {e.retry_after:.0f} s "
            f"(more than {e.limit:.0f} s); run again later: "
            "everything fetched so far is cached"
        ) from e.last
    except RetriesExhausted as e:
        raise SourceUnavailable(
            f"{what}: still failing after {e.attempts} attempts ({e.last}); "
            "run again later (fetched chunks are cached) or raise --retries"
        ) from e.last


class HttpStatusError(Exception):
    """A non-200 answer (internal: classified for retrying)."""

    def __init__(self, status: int, url: str, body: str, retry_after: float | None) -> None:
        self.status = status
        self.url = url
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} from {url.split('?')[0]}: {excerpt(body)!r}")


def excerpt(body: str, limit: int = 120) -> str:
    """A short, one-line view of an answer: an HTML page's title, else its first characters."""
    m = re.search(r"<title[^>]*>(.*?)</title>", body[:4000], re.I | re.S)
    text = f"HTML page: {m.group(1)}" if m else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Bodies a source may be expected to answer with: an HTML page is never one of them.
Expect = str  # "csv" | "json" | "xml" | "binary"


def looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script"))


def check_not_html(what: str, body: bytes, content_type: str, expect: Expect) -> None:
    """Raise when a 200 answer is an HTML page (an interstitial) instead of `expect`."""
    html_type = content_type.split(";")[0].strip().lower() == "text/html"
    if looks_like_html(body) or (html_type and expect in ("json", "binary")):
        text = excerpt(body[:4000].decode("utf-8", "replace"))
        raise SourceFormatError(
            f"{what}: HTTP 200 but an HTML page instead of {expect} (a consent, challenge or "
            f"proof-of-work interstitial?): {text!r}; the source does not serve programmatic "
            "clients this way any more: use the next source for the symbol"
        )


class HttpClient:
    """GET with pacing per host, retries and a timeout on every call (aiohttp)."""

    def __init__(
        self,
        pacer: KeyedPacer,
        policy: BackoffPolicy,
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

    async def get_bytes(
        self,
        url: str,
        params: Mapping[str, str],
        what: str,
        *,
        expect: Expect,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        secrets: Iterable[str] = (),
    ) -> bytes:
        """The body of a 200 answer. With `missing_ok`, a 404 is an empty body (a file that
        does not exist: no data for that period). `secrets` (API keys) never reach a message."""
        import aiohttp

        session = self._session
        if session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        hidden = [x for x in secrets if x]

        def redact(text: str) -> str:
            for x in hidden:
                text = text.replace(x, "***")
            return text

        async def attempt() -> bytes:
            self.requests += 1
            async with session.get(url, params=dict(params), headers=headers) as resp:
                body = await resp.read()
                if resp.status == 200:
                    check_not_html(what, body, resp.headers.get("Content-Type", ""), expect)
                    return body
                if resp.status == 404 and missing_ok:
                    return b""
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                text = body.decode("utf-8", "replace")
                raise HttpStatusError(resp.status, redact(str(resp.url)), redact(text), retry_after)

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
                progress=lambda m: self.progress(redact(m)),
            )
        except HttpStatusError as e:
            hint = STATUS_HINTS.get(e.status, "check the source URL, or use the next source")
            raise SourceUnavailable(f"{what}: {e}; {hint}", status=e.status) from None
        except SourceUnavailable as e:
            last = e.__cause__
            status = last.status if isinstance(last, HttpStatusError) else None
            network = isinstance(last, aiohttp.ClientConnectionError | TimeoutError)
            raise SourceUnavailable(redact(str(e)), status=status, network=network) from None


# --------------------------------------------------------------------------- reachability


def _resolve(host: str, port: int) -> asyncio.Future[list[str]]:
    """getaddrinfo in a daemon thread: a resolver that hangs neither blocks the loop nor
    holds up the interpreter's exit (the default executor would be joined at shutdown)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[str]] = loop.create_future()

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result: list[str] | BaseException = [str(i[4][0]) for i in infos]
        except OSError as e:
            result = e

        def done() -> None:
            if fut.done():
                return
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(done)

    threading.Thread(target=work, name=f"resolve {host}", daemon=True).start()
    return fut


async def probe_host(url: str, within: float = 3.0) -> str | None:
    """None when `url`'s host accepts a TCP connection within `within` s, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(within):
            addresses = await _resolve(host, port)
            last: OSError | None = None
            for address in addresses[:3]:
                try:
                    _reader, writer = await asyncio.open_connection(address, port)
                except OSError as e:
                    last = e
                    continue
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return None
            raise last or OSError(f"no address for {host}")
    except TimeoutError:
        return f"no answer from {host}:{port} within {within:.0f} s"
    except socket.gaierror as e:
        return f"cannot resolve {host} ({e.strerror or e})"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"


async def probe_hosts(urls: Iterable[str], within: float = 3.0) -> dict[str, str | None]:
    """host -> None (reachable) or the reason it is not; every host probed at once."""
    by_host = {host_of(u): u for u in urls}
    reasons = await asyncio.gather(*(probe_host(u, within) for u in by_host.values()))
    return dict(zip(by_host, reasons, strict=True))


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


# --------------------------------------------------------------------------- source context


@dataclass(slots=True)
class Tally:
    """What one source did: chunks served from the cache and fetched."""

    cached: int = 0
    fetched: int = 0


@dataclass(slots=True)
class SourceContext:
    """What a source gets from the driver: the shared client and cache, its base URL, the
    window, the clock and a tally of its chunks."""

    http: HttpClient
    cache: ChunkCache
    base_url: str
    window: tuple[float, float]
    progress: Progress
    now: float
    tally: Tally = field(default_factory=Tally)

    async def chunk(
        self,
        key: tuple[str, ...],
        period_end: float,
        label: str,
        fetch: Callable[[], Awaitable[bytes]],
        parse: Callable[[bytes], T],
    ) -> T:
        """The parsed chunk `key`: from the cache when fresh, else fetched, parsed, then
        cached (a body that does not parse is never cached)."""
        path = self.cache.path(*key)
        body = await self.cache.load(path, period_end)
        if body is not None:
            try:
                out = parse(body)
            except SourceFormatError:
                body = None  # a cache file from an older format: fetch again
            else:
                self.tally.cached += 1
                self.progress(f"{label} (cache)")
                return out
        body = await fetch()
        out = parse(body)
        await self.cache.store(path, body)
        self.tally.fetched += 1
        self.progress(label)
        return out

    def years(self, margin_days: int = 1) -> range:
        """The calendar years of the window widened by `margin_days`, none after this year."""
        lo, hi = window_dates(self.window, margin_days)
        return range(lo.year, min(hi.year, datetime.fromtimestamp(self.now, UTC).year) + 1)

    async def yearly(
        self,
        key: tuple[str, ...],
        ext: str,
        label: str,
        fetch: Callable[[int, str], Awaitable[bytes]],
        parse: Callable[[bytes, str], T],
        *,
        margin_days: int = 1,
    ) -> AsyncIterator[tuple[int, T]]:
        """(year, parsed chunk) for each of :meth:`years`, one :meth:`chunk` a calendar year:
        cached as ``key/<year>.<ext>``, labelled ``"<label> <year>"``; `fetch(year, what)`
        and `parse(body, what)` get that year and label."""
        for year in self.years(margin_days):
            what = f"{label} {year}"

            def parse_year(body: bytes, what: str = what) -> T:
                return parse(body, what)

            path = (*key, f"{year}.{ext}")
            yield (
                year,
                await self.chunk(
                    path, year_end(year), what, partial(fetch, year, what), parse_year
                ),
            )


FetchFn = Callable[[SourceContext, Sequence[str]], Awaitable[dict[str, SymbolResult]]]


@dataclass(frozen=True, slots=True)
class Source:
    """A history source: its name (``--source``/``--source-url`` use it), what it serves and
    how, and the facts the README's source matrix shows."""

    name: str
    label: str
    url: str  # default base URL
    symbols: tuple[str, ...]
    fetch: FetchFn
    granularity: str
    lag: str
    limits: str = ""
    key_env: str | None = None  # the environment variable it needs, if keyed


def window_dates(window: tuple[float, float], margin_days: int = 0) -> tuple[date, date]:
    """The UTC dates of `window`, widened by `margin_days` on both sides."""
    lo = datetime.fromtimestamp(window[0], UTC).date() - timedelta(days=margin_days)
    hi = datetime.fromtimestamp(window[1], UTC).date() + timedelta(days=margin_days)
    return lo, hi


def year_end(year: int) -> float:
    return datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()


def keep(
    result: SymbolResult, ts: float, value: float | None, window: tuple[float, float], now: float
) -> None:
    """Add a row when `ts` is inside the window and not in the future; count a bad value.

    Values published together (a weekly release stamps a week of dates with one instant) come
    in date order; only the newest of them is what was known at that instant, so it replaces
    the row before it with the same `ts`."""
    if not window[0] <= ts <= window[1] or ts > now:
        return
    if value is None or value != value or value <= 0:
        result.skipped += 1
        return
    row = Row(ts, result.symbol, value)
    if result.rows and result.rows[-1].ts == ts:
        result.rows[-1] = row
    else:
        result.rows.append(row)
