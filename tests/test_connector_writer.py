"""The batching writer and the backoff: nothing accepted is lost while Redis is away."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.core.models import Tick
from bot.core.retry import Backoff, BackoffPolicy
from bot.store.redis_store import Store
from connectors.config import BackoffConfig
from connectors.writer import TickWriter
from tests.fake_feeds import free_port, redis_ticks, wait_until


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    b = Backoff(BackoffPolicy.of(BackoffConfig(initial=1, max=8, multiplier=2, jitter=0.0)))
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    b.reset()
    assert b.next_delay() == 1
    jittered = Backoff(
        BackoffPolicy.of(BackoffConfig(initial=4, max=8, jitter=0.5)), rng=lambda: 1.0
    )
    assert jittered.next_delay() == 2.0  # shortened by up to half, never lengthened
    delays = [
        Backoff(BackoffPolicy.of(BackoffConfig(initial=4, jitter=0.5))).next_delay()
        for _ in range(20)
    ]
    assert len(set(delays)) > 1 and all(2.0 <= d <= 4.0 for d in delays)  # spread out


async def test_batches_are_written_in_order(store: Store) -> None:
    w = TickWriter(store, batch_size=100, flush_interval=0.001)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    for i in range(1000):
        w.put(Tick(1000.0 + i, "BTC/USD", 100.0 + i, "t"))
        if i % 250 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: w.written == 1000, what="all written")
    stop.set()
    await task
    assert [t.value for t in await redis_ticks(store)] == [100.0 + i for i in range(1000)]
    assert w.batches < 1000  # batched, not one round trip per tick


async def test_ticks_wait_for_redis_to_come_back(store: Store) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    unreachable = Store(dead, prefix=store.prefix)
    w = TickWriter(
        unreachable,
        batch_size=10,
        flush_interval=0.001,
        backoff=BackoffConfig(initial=0.01, max=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    for i in range(50):
        w.put(Tick(1000.0 + i, "BTC/USD", 1.0 + i, "t"))
    await wait_until(lambda: w.errors >= 2, what="failed writes")
    assert w.written == 0  # (the 50 are buffered, or in a retry that will fail)
    w.store = store  # Redis is back
    for i in range(50, 60):
        w.put(Tick(1000.0 + i, "BTC/USD", 1.0 + i, "t"))
    await wait_until(lambda: w.written == 60, what="everything written")
    stop.set()
    await task
    await dead.aclose()
    assert [t.value for t in await redis_ticks(store)] == [1.0 + i for i in range(60)]


async def test_buffer_is_bounded_and_overflow_counted(store: Store) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    w = TickWriter(
        Store(dead, prefix=store.prefix),
        batch_size=5,
        flush_interval=0.001,
        max_buffer=20,
        backoff=BackoffConfig(initial=0.01, max=0.02),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    for i in range(30):
        w.put(Tick(1000.0 + i, "BTC/USD", 1.0 + i, "t"))
    await wait_until(lambda: w.errors >= 1, what="a failed write")
    stop.set()
    await task  # the last attempts at shutdown fail too: the buffer is back, bounded
    await dead.aclose()
    assert w.pending == 20 and w.overflow == 10 and w.written == 0


async def test_shutdown_flushes_what_was_accepted(store: Store) -> None:
    w = TickWriter(store, batch_size=10_000, flush_interval=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    await asyncio.sleep(0)
    for i in range(25):
        w.put(Tick(1000.0 + i, "BTC/USD", 1.0 + i, "t"))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(await redis_ticks(store)) == 25
