"""What every feed shares: health, validation, reconnect with backoff, the stall watchdog.

A streaming feed implements `session()`: connect, subscribe, read until the connection ends.
`StreamFeed.run()` wraps it in the reconnect loop and a watchdog that restarts a session that
has gone silent while its market is open. A polled feed implements `poll()`; `PolledFeed.run()`
calls it on its interval and retries errors with backoff (honouring Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bot.core.errors import StressbotError
from bot.core.models import INPUT_SYMBOLS
from bot.core.retry import Backoff, BackoffPolicy, sleep_or_stop
from connectors.config import (
    BaseFeedConfig,
    FeedsConfig,
    PolledFeedConfig,
    Schedule,
    StreamFeedConfig,
)
from connectors.health import FeedHealth
from connectors.market_hours import MarketHours
from connectors.validate import TickValidator

log = logging.getLogger(__name__)

#: (feed name, canonical symbol, event time, value): where accepted ticks go.
TickSink = Callable[[str, str, float, float], None]

#: The config model of a feed class (its `[feeds.sources.<name>]` table).
ConfigT = TypeVar("ConfigT", bound=BaseFeedConfig)
StreamConfigT = TypeVar("StreamConfigT", bound=StreamFeedConfig)
PolledConfigT = TypeVar("PolledConfigT", bound=PolledFeedConfig)


class FeedError(StressbotError):
    """A feed failed in a way the reconnect loop handles (message is safe to show)."""


class FeedSetupError(FeedError):
    """A feed cannot run as configured (e.g. its API key is not in the environment)."""


class SourceUnavailable(FeedError):
    """The source refuses us for good from here: HTTP 451 ("restricted location", e.g. Binance
    from the US and some clouds) or 403. Retrying at the normal pace cannot help, so the feed
    waits `feeds.unavailable_retry` (long) between tries and says what to do meanwhile."""

    def __init__(self, source: str, status: int | str, detail: str = "") -> None:
        self.source = source
        self.status = status
        text = f"unavailable from this location (HTTP {status} from {source})"
        if detail:
            text += f": {detail[:100]}"
        text += (
            "; its symbols go to the next source configured for them ([feeds.combine]); "
            "set enabled = false to stop trying, or point its URL at a mirror you may use"
        )
        super().__init__(text)


def location_status(text: str) -> int | None:
    """451 or 403 when an error text (a ccxt error, an HTTP status line) carries one."""
    m = _LOCATION_STATUS.search(text)
    return int(m.group(1)) if m else None


_LOCATION_STATUS = re.compile(r"(?<![\d.])(451|403)(?![\d.])")


class PollError(FeedError):
    """A poll failed; `retry_after` (seconds) if the server said when to come back."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class FeedContext:
    feeds: FeedsConfig
    sink: TickSink
    market: MarketHours = field(default_factory=MarketHours)
    clock: Callable[[], float] = time.time
    on_health_change: Callable[[FeedHealth], None] | None = None


def symbol_schedule(feed_schedule: Schedule, canonical: str) -> Schedule:
    """Gold and silver on an FX-hours venue also halt daily."""
    if feed_schedule == "fx" and canonical in ("XAU/USD", "XAG/USD"):
        return "metals"
    return feed_schedule


class Feed(ABC, Generic[ConfigT]):
    """A connector, built from its name, its config table `cfg` and the shared context."""

    kind = "feed"

    def __init__(self, name: str, cfg: ConfigT, ctx: FeedContext) -> None:
        self.name = name
        self.cfg = cfg
        self.symbols = dict(cfg.symbols)  # venue symbol -> canonical
        # venue symbols the venue refuses for this account/location (why), not subscribed
        self.skipped: dict[str, str] = {}
        self.ctx = ctx
        self.clock = ctx.clock
        self.health = FeedHealth(name, self.kind, ctx.clock, ctx.on_health_change)
        self.validator = TickValidator(self.health, cfg.max_future, cfg.max_past, ctx.clock)
        self._sink = ctx.sink
        self.backoff = Backoff(BackoffPolicy.of(ctx.feeds.backoff))
        unknown = [c for c in self.symbols.values() if c not in INPUT_SYMBOLS]
        if unknown:
            raise FeedSetupError(f"feed {name}: unknown canonical symbols {unknown}")

    def emit(self, canonical: str, ts: float, value: float, now: float) -> bool:
        """Validate one observation and pass it on. Returns whether it was accepted."""
        if not self.validator.accept(canonical, ts, value, now):
            return False
        h = self.health
        h.ticks += 1
        h.symbol_ticks[canonical] += 1
        h.last_tick_ts = ts
        h.last_tick_wall = now
        if h.state != "ok":
            h.set_state("ok", "receiving data")
        self._sink(self.name, canonical, ts, value)
        return True

    def error(self, detail: str) -> None:
        self.health.errors += 1
        self.health.detail = detail

    async def wait_unavailable(self, stop: asyncio.Event, detail: str) -> None:
        """Down with the 'unavailable from this location' detail, then a long wait (at least
        `feeds.unavailable_retry`, jittered) before the next try: never retried hot."""
        self.health.unavailable = True
        self.health.set_state("down", detail)
        delay = self.backoff.next_delay(self.ctx.feeds.unavailable_retry)
        self.health.detail = f"{detail}; trying again in {delay / 60:.0f} min"
        await sleep_or_stop(stop, delay)

    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set. Never raises for a source's fault."""


class StreamFeed(Feed[StreamConfigT]):
    """A long-lived connection, restarted on failure and when it stalls."""

    def __init__(self, name: str, cfg: StreamConfigT, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self.schedule: Schedule = cfg.schedule
        self.stale_after: float = (
            cfg.stale_after if cfg.stale_after is not None else ctx.feeds.stale_after
        )
        self.session_start = 0.0
        self._stalled = False
        self._schedules = sorted({symbol_schedule(cfg.schedule, c) for c in self.symbols.values()})

    @abstractmethod
    async def session(self) -> None:
        """Connect, subscribe and read until the connection ends (return or raise)."""

    def connected(self) -> None:
        """Call when the connection is up and subscribed: the watchdog measures from here."""
        self.session_start = self.clock()
        if self.health.state in ("starting", "down"):
            self.health.detail = "connected, waiting for data"

    def market_open_since(self, now: float) -> float | None:
        """When the feed's market opened (-inf if always open), or None when all are closed."""
        best: float | None = None
        for sch in self._schedules:
            since = self.ctx.market.open_since(sch, now)
            if since is not None and (best is None or since < best):
                best = since
        return best

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._stalled = False
            self.session_start = self.clock()
            ticks_before = self.health.ticks
            session = asyncio.create_task(self.session(), name=f"feed:{self.name}")
            watchdog = asyncio.create_task(self._watchdog(session), name=f"watchdog:{self.name}")
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (watchdog, stopper, session):
                    t.cancel()
                for t in (watchdog, stopper, session):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            if stop.is_set():
                break
            detail = self._outcome(session)
            healthy_for = self.clock() - self.session_start
            reset_after = self.ctx.feeds.backoff.reset_after
            if self.health.ticks > ticks_before and healthy_for >= reset_after:
                self.backoff.reset()
            exc = _exc(session)
            if isinstance(exc, FeedSetupError):
                self.health.set_state("down", detail)
                await stop.wait()
                break
            if isinstance(exc, SourceUnavailable):
                await self.wait_unavailable(stop, detail)
                continue
            if self._stalled:
                self.health.set_state("stale", detail)
            else:
                self.health.set_state("down", detail)
            delay = self.backoff.next_delay()
            self.health.detail = f"{detail}; reconnecting in {delay:.1f}s"
            await sleep_or_stop(stop, delay)

    def _outcome(self, session: asyncio.Task[None]) -> str:
        if self._stalled:
            self.health.errors += 1
            return f"no data for {self.stale_after:g}s while the market is open"
        exc = _exc(session)
        if exc is None:
            self.health.errors += 1
            return "connection closed by the server"
        self.health.errors += 1
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, FeedError):
            text = f"{type(exc).__name__}: {text}"
            log.info("feed %s: session ended: %s", self.name, text)
        return text[: 500 if isinstance(exc, SourceUnavailable) else 300]

    async def _watchdog(self, session: asyncio.Task[None]) -> None:
        period = max(0.01, min(1.0, self.stale_after / 4))
        grace = self.ctx.feeds.market_hours.open_grace
        while not session.done():
            await asyncio.sleep(period)
            now = self.clock()
            h = self.health
            open_since = self.market_open_since(now)
            if open_since is None:
                recent = h.last_tick_wall is not None and now - h.last_tick_wall < self.stale_after
                if h.state in ("starting", "ok", "stale") and not recent:
                    h.set_state("closed", "market closed")
                continue
            quiet_from = max(h.last_tick_wall or 0.0, self.session_start)
            limit = self.stale_after
            if open_since > quiet_from:
                quiet_from, limit = open_since, self.stale_after + grace
            if now - quiet_from > limit:
                self._stalled = True
                session.cancel()
                return


def _exc(task: asyncio.Task[None]) -> BaseException | None:
    if task.cancelled():
        return None
    return task.exception()


class PolledFeed(Feed[PolledConfigT]):
    """Fetch on an interval; errors are retried with backoff, Retry-After respected."""

    def __init__(self, name: str, cfg: PolledConfigT, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self.interval = cfg.interval
        self.timeout = cfg.timeout

    @abstractmethod
    async def poll(self) -> int:
        """One round of requests. Returns the number of new values; raises PollError."""

    def next_poll_delay(self, now: float) -> float:
        """Seconds until the next poll after a successful one (default: the interval)."""
        return self.interval

    async def setup(self) -> None:
        """Open sessions etc. before the first poll."""

    async def teardown(self) -> None:
        """Close what setup() opened."""

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.setup()
        except FeedSetupError as e:
            self.health.set_state("down", str(e))
            await stop.wait()
            return
        try:
            while not stop.is_set():
                try:
                    new = await self.poll()
                except FeedSetupError as e:
                    self.health.errors += 1
                    self.health.set_state("down", str(e))
                    await stop.wait()
                    return
                except SourceUnavailable as e:
                    self.health.errors += 1
                    await self.wait_unavailable(stop, str(e))
                    continue
                except PollError as e:
                    self.health.errors += 1
                    self.health.set_state("down", str(e))
                    delay = self.backoff.next_delay(e.retry_after)  # Retry-After: a floor
                    self.health.detail = f"{e}; retrying in {delay:.1f}s"
                    await sleep_or_stop(stop, delay)
                    continue
                self.backoff.reset()
                if self.health.state != "ok":
                    self.health.set_state("ok", "polling")
                delay = self.next_poll_delay(self.clock())
                self.health.detail = f"polled, {new} new value(s); next poll in {delay:.0f}s"
                await sleep_or_stop(stop, delay)
        finally:
            await self.teardown()
