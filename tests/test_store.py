"""The Redis store: atomic alert + checkpoint writes, outbox groups, tick stream."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from bot.core.models import Alert, PageWrite, Tick
from bot.store.redis_store import Checkpoint, PagesOutOfStep, Store


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
    pages = PageWrite(None, "run.1", {"BTC/USD:7": b"[[1.0],[2.0],[],[],[],[],[]]"})
    cp = Checkpoint(position="0:10", fingerprint="fp", clock=123.0, state=b"{}", pages=pages)
    ids = await store.commit(cp, [_alert(1), _alert(2)], rule_states={"r": {"firing": True}})
    assert len(ids) == 2
    loaded = await store.load_checkpoint()
    assert loaded == cp
    assert [a.id for _, a in await store.alerts()] == ["r:1", "r:2"]
    assert (await store.rule_states())["r"] == {"firing": True}


async def _commit_pages(store: Store, pages: PageWrite, alert: int = 0) -> None:
    await store.commit(Checkpoint("p", "f", 0.0, b"{}", pages), [_alert(alert)] if alert else [])


async def test_pages_written_against_their_base_revision_apply_on_it(store: Store) -> None:
    await _commit_pages(store, PageWrite(None, "a.1", {"X:1": b"1", "X:2": b"2", "X:3": b"3"}))
    await _commit_pages(store, PageWrite("a.1", "a.2", {"X:3": b"3b", "X:4": b"4"}, ["X:1"]))
    cp = await store.load_checkpoint()
    assert cp is not None and cp.pages is not None
    assert cp.pages.rev == "a.2"
    assert cp.pages.put == {"X:2": b"2", "X:3": b"3b", "X:4": b"4"}


async def test_pages_of_another_base_revision_are_refused_with_nothing_written(
    store: Store,
) -> None:
    await _commit_pages(store, PageWrite(None, "a.1", {"X:1": b"1"}))
    with pytest.raises(PagesOutOfStep, match=r"revision 'a\.1'"):
        await _commit_pages(store, PageWrite("a.0", "a.2", {"X:1": b"lost"}), alert=1)
    cp = await store.load_checkpoint()
    assert cp is not None and cp.pages == PageWrite(None, "a.1", {"X:1": b"1"})
    assert await store.alerts() == []  # the alert waits for a commit that stands


async def test_pages_written_against_a_base_on_an_empty_store_are_refused(store: Store) -> None:
    with pytest.raises(PagesOutOfStep, match="revision 'none'"):
        await _commit_pages(store, PageWrite("a.1", "a.2", {"X:1": b"1"}))
    assert await store.load_checkpoint() is None


async def test_a_write_of_every_page_replaces_the_pages_held(store: Store) -> None:
    await _commit_pages(store, PageWrite(None, "a.1", {"X:1": b"1", "Y:1": b"1"}))
    await _commit_pages(store, PageWrite(None, "b.1", {"X:2": b"2"}))
    cp = await store.load_checkpoint()
    assert cp is not None and cp.pages == PageWrite(None, "b.1", {"X:2": b"2"})


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
