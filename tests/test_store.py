"""The Redis store: atomic alert + checkpoint writes, outbox groups, tick stream."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from bot.core.models import Alert, Tick
from bot.store.redis_store import Checkpoint, Store


def _alert(i: int) -> Alert:
    return Alert(
        id=f"r:{i}",
        ts=1000.0 + i,
        rule="r",
        pattern="custom",
        severity="info",
        summary=f"alert {i}",
    )


async def test_commit_writes_alerts_and_checkpoint_together(store: Store) -> None:
    cp = Checkpoint(position="0:10", fingerprint="fp", clock=123.0, state=b"{}")
    ids = await store.commit(cp, [_alert(1), _alert(2)], rule_states={"r": {"firing": True}})
    assert len(ids) == 2
    loaded = await store.load_checkpoint()
    assert loaded == cp
    assert [a.id for _, a in await store.alerts()] == ["r:1", "r:2"]
    assert (await store.rule_states())["r"] == {"firing": True}


async def test_outbox_group_sees_each_alert_once_until_acked(store: Store) -> None:
    await store.commit(Checkpoint("p", "f", 0.0, b"{}"), [_alert(1), _alert(2)])
    await store.ensure_group("dest")
    first = await store.read_group("dest", "c1")
    assert [a.id for _, a in first] == ["r:1", "r:2"]
    assert await store.read_group("dest", "c1") == []
    await store.ack("dest", [first[0][0]])
    pending = await store.read_group("dest", "c1", pending=True)
    assert [a.id for _, a in pending] == ["r:2"]


async def test_ticks_round_trip_through_the_stream(store: Store) -> None:
    await store.add_ticks([Tick(1.5, "BTC/USD", 65000.25, "binance"), Tick(2.0, "SOFR", 5.33)])
    got = await store.read_ticks("0-0")
    assert [t for _, t in got] == [
        Tick(1.5, "BTC/USD", 65000.25, "binance"),
        Tick(2.0, "SOFR", 5.33, ""),
    ]
    assert await store.read_ticks(got[-1][0]) == []


async def test_series_keeps_only_points_after_the_retention(store: Store) -> None:
    await store.add_series({"BTC/USD": [(1.0, 10.0), (2.0, 11.0), (3.0, 12.0)]}, keep_after=2.0)
    assert await store.series("BTC/USD") == [(2.0, 11.0), (3.0, 12.0)]


async def test_large_batches_keep_every_tick_in_order(store: Store) -> None:
    ticks = [Tick(float(i), "BTC/USD", 100.0 + i, "x") for i in range(4500)]
    await store.add_ticks(ticks)
    got = await store.read_ticks("0-0", count=10_000)
    assert [t for _, t in got] == ticks


async def test_tick_stream_is_trimmed_to_about_its_maxlen(redis: Redis) -> None:
    s = Store(redis, prefix=f"test:{uuid.uuid4().hex[:12]}", tick_maxlen=1000)
    try:
        for k in range(5):
            await s.add_ticks([Tick(float(k * 1000 + i), "SPX", 1.0) for i in range(1000)])
        n = await redis.xlen(s.k_ticks)
        assert 1000 <= n < 2500
    finally:
        await s.clear()
