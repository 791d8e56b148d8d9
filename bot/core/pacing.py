"""The one request pacer: a minimum interval between starts, pauses, an optional parent.

:class:`Pacer` paces one destination (a Telegram chat, a Discord webhook, one HTTP host):

* requests start at least ``min_interval`` apart;
* ``pause(seconds)`` holds every request until then (a 429's Retry-After, a Discord bucket
  that is empty until it resets); a later, longer pause extends it, a shorter one does not
  cut it short;
* with a ``parent`` a request also waits for the parent (Telegram's global limit over every
  chat, Discord's global 429 over every webhook).

:class:`KeyedPacer` keeps one :class:`Pacer` per key with a per-key interval (the history
downloader's per-host pacing; ``defer(host, s)`` pauses one host).

The spacing is aiolimiter's: an ``AsyncLimiter(1, min_interval)`` is a leaky bucket of
capacity 1 that drains in ``min_interval`` seconds, so no burst is allowed and two
acquisitions are at least ``min_interval`` apart (the aiolimiter docs' "no bursts" recipe);
waiters are woken in FIFO order. aiolimiter has no notion of a pause, nor of how long until
capacity frees, so this wrapper adds both: a "paused until" instant, slept out before the
limiter is asked, and the time of the last acquisition, from which :meth:`Pacer.ready_in`
tells (exactly, for capacity 1) how long a request would wait, which a bounded drain uses to
give up *before* waiting past its deadline. What is relied on from aiolimiter (>= 1.1, read
against 1.3): ``AsyncLimiter(max_rate, time_period)``, ``await acquire()`` (returns without
suspending when there is capacity), and that the limiter runs on the event loop's clock
(``loop.time()``, which is ``time.monotonic()`` on the default loop, the clock used here).
A limiter belongs to the event loop it is first used on: make pacers inside the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from aiolimiter import AsyncLimiter


class Pacer:
    """At least `min_interval` seconds between request starts, none before a pause ends,
    and none before `parent` (if any) allows it."""

    def __init__(
        self,
        min_interval: float,
        parent: Pacer | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # `clock` times pauses and ready_in(); wait() sleeps on the event loop, so a fake clock
        # is for ready_in() and pause() tests only.
        self.min_interval = max(0.0, min_interval)
        self.parent = parent
        self.clock = clock
        self._limiter = AsyncLimiter(1, self.min_interval) if self.min_interval > 0 else None
        self._paused_until = 0.0
        self._last_start = float("-inf")
        self._lock = asyncio.Lock()  # one waiter at a time re-checks the pause, in FIFO order

    def pause(self, seconds: float) -> None:
        """No request starts within the next `seconds` (a longer pause already set stays)."""
        self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds until this pacer's and its parents' pauses end (0 when none holds)."""
        own = max(0.0, self._paused_until - self.clock())
        return max(own, self.parent.paused_for()) if self.parent is not None else own

    def ready_in(self) -> float:
        """Seconds a request would wait now: pauses and spacing, here and in the parents."""
        spacing = max(0.0, self._last_start + self.min_interval - self.clock())
        own = max(spacing, self._paused_until - self.clock(), 0.0)
        return max(own, self.parent.ready_in()) if self.parent is not None else own

    def _held_for(self) -> float:
        own = max(0.0, self._paused_until - self.clock())
        return max(own, self.parent.ready_in()) if self.parent is not None else own

    async def wait(self) -> None:
        """Wait until a request may start, and count it as started."""
        async with self._lock:
            while True:
                # Pauses (and the parent) first: a limiter slot taken before a long pause
                # would let the next request through right after it, two at once after a 429.
                held = self._held_for()
                while held > 0:  # re-checked: a pause may be extended while we sleep
                    await asyncio.sleep(held)
                    held = self._held_for()
                if self._limiter is not None:
                    await self._limiter.acquire()
                if self.paused_for() <= 0:
                    break
                # A pause began while we waited for spacing: honour it, then space again.
            if self.parent is not None:
                await self.parent.wait()
            self._last_start = self.clock()


class KeyedPacer:
    """One :class:`Pacer` per key (an HTTP host), each with its own interval."""

    def __init__(
        self,
        min_interval: float,
        per_key: Mapping[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval = min_interval
        self.per_key = dict(per_key or {})
        self.clock = clock
        self._pacers: dict[str, Pacer] = {}

    def interval(self, key: str) -> float:
        return self.per_key.get(key, self.min_interval)

    def pacer(self, key: str) -> Pacer:
        p = self._pacers.get(key)
        if p is None:
            p = self._pacers[key] = Pacer(self.interval(key), clock=self.clock)
        return p

    async def wait(self, key: str) -> None:
        await self.pacer(key).wait()

    def defer(self, key: str, seconds: float) -> None:
        """No request for `key` starts within the next `seconds`."""
        self.pacer(key).pause(seconds)


__all__ = ["KeyedPacer", "Pacer"]
