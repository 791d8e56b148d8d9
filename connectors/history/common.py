"""What every history source shares: errors, rows, HTTP client, pacing, retries, chunk cache.

:mod:`connectors.history.download` drives the sources (:mod:`connectors.history.fred_csv`,
:mod:`connectors.history.ohlc`); they all build on this module and none of them imports the
driver. Requests are paced per host (:class:`bot.core.pacing.KeyedPacer`), retried on 429, 5xx
and network errors with capped exponential backoff with jitter (:data:`DOWNLOAD_RETRY`,
:func:`with_retries` over :func:`bot.core.retry.retry_async`; a ``Retry-After`` header is
honoured, :func:`bot.core.retry_after.parse_retry_after`) and every call has a timeout
(:class:`HttpClient`). Fetched
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
        super().__init__(f"HTTP {status} from {url}: {body[:200].strip()!r}")


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
