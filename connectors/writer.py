"""The batching tick writer: feeds append ticks, one task writes them to Redis in batches.

`put()` is synchronous and cheap (a list append), so the hot path never waits for Redis.
The writer flushes when `batch_size` ticks are buffered or every `flush_interval`, through
`Store.add_ticks` (one pipelined round trip per batch). If Redis fails, the batch goes back
to the front of the buffer and is retried with backoff: an accepted tick is not lost unless
the buffer overflows `max_buffer` (the oldest are dropped and counted) or the process dies.
"""

from __future__ import annotations

import asyncio
import logging

from bot.core.models import Tick
from bot.core.retry import Backoff, BackoffPolicy, sleep_or_stop
from bot.store.redis_store import Store
from connectors.config import BackoffConfig

log = logging.getLogger(__name__)


class TickWriter:
    def __init__(
        self,
        store: Store,
        batch_size: int = 1000,
        flush_interval: float = 0.005,
        max_buffer: int = 200_000,
        backoff: BackoffConfig | None = None,
        write_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.write_timeout = write_timeout
        self._backoff = Backoff(BackoffPolicy.of(backoff or BackoffConfig(initial=0.1, max=5.0)))
        self._buf: list[Tick] = []
        self._wake = asyncio.Event()
        self.written = 0
        self.batches = 0
        self.overflow = 0
        self.errors = 0
        self.last_error = ""

    @property
    def pending(self) -> int:
        return len(self._buf)

    def put(self, tick: Tick) -> None:
        buf = self._buf
        buf.append(tick)
        if len(buf) >= self.batch_size:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush until `stop` is set, then flush what is left (bounded by write_timeout)."""
        waker = asyncio.create_task(self._wake_on(stop))
        try:
            while not stop.is_set():
                if len(self._buf) < self.batch_size:
                    await sleep_or_stop(self._wake, self.flush_interval)
                self._wake.clear()
                if self._buf and not await self._flush_once():
                    delay = self._backoff.next_delay()
                    await sleep_or_stop(stop, delay)
        finally:
            waker.cancel()
            await self._drain()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _drain(self) -> None:
        # Final flush on shutdown: a few attempts, never forever.
        for _ in range(3):
            if not self._buf:
                return
            try:
                if await asyncio.shield(self._flush_once()):
                    continue
            except asyncio.CancelledError:
                break
            await asyncio.sleep(0.05)
        if self._buf:
            log.error(
                "tick writer: %d ticks not written at shutdown (%s)",
                len(self._buf),
                self.last_error or "cancelled",
            )

    async def _flush_once(self) -> bool:
        batch = self._buf
        self._buf = []
        try:
            await asyncio.wait_for(self.store.add_ticks(batch), self.write_timeout)
        except asyncio.CancelledError:
            self._buf = batch + self._buf  # maybe written, maybe not: at-least-once
            raise
        except (OSError, TimeoutError, ConnectionError, Exception) as e:
            # Put the batch back in front, in order, and keep the buffer bounded.
            self._buf = batch + self._buf
            excess = len(self._buf) - self.max_buffer
            if excess > 0:
                del self._buf[:excess]
                self.overflow += excess
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"[:300]
            log.warning(
                "tick writer: Redis write of %d ticks failed (%s); %d buffered",
                len(batch),
                self.last_error,
                len(self._buf),
            )
            return False
        self.written += len(batch)
        self.batches += 1
        self._backoff.reset()
        return True
