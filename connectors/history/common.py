"""What every history source shares: errors, rows, HTTP client, pacing, retries, chunk cache.

:mod:`connectors.history.download` drives the sources (:mod:`connectors.history.fred_csv`,
:mod:`connectors.history.ohlc`); they all build on this module and none of them imports the
driver. Requests are paced per host (:class:`HostPacer`), retried on 429, 5xx and network errors
with capped exponential backoff with jitter (:class:`RetryPolicy`, :func:`with_retries`; a
``Retry-After`` header is honoured) and every call has a timeout (:class:`HttpClient`). Fetched
chunks live in :class:`ChunkCache`, written atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time as _time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from bot.core.errors import StressbotError
from connectors.fred_format import SourceFormatError

if TYPE_CHECKING:
    import aiohttp

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
