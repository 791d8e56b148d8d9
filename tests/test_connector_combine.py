"""Several sources for one canonical symbol: median of live sources, or primary with failover."""

from __future__ import annotations

from typing import Any

import pytest

from bot.store.redis_store import Store
from connectors.combine import Combiner
from connectors.config import CombineConfig
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Script,
    feeds_config,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    redis_ticks,
    running,
    wait_until,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_median_of_live_sources() -> None:
    clock = Clock()
    c = Combiner("BTC/USD", CombineConfig(mode="median", max_age=10), ["a", "b", "c"], clock)
    t1 = c.update("a", 1000.0, 100.0, clock())
    assert t1 is not None and (t1.value, t1.source) == (100.0, "a")
    c.update("b", 1000.1, 110.0, clock())
    t3 = c.update("c", 1000.2, 90.0, clock())
    assert t3 is not None and (t3.value, t3.source) == (100.0, "median(a,b,c)")
    clock.t += 11  # a and b go quiet; only c's new value is live
    t4 = c.update("c", 1011.0, 95.0, clock())
    assert t4 is not None and (t4.value, t4.source) == (95.0, "c")


def test_failover_prefers_primary_while_it_is_live() -> None:
    clock = Clock()
    c = Combiner(
        "BTC/USD",
        CombineConfig(mode="failover", sources=["primary", "backup"], max_age=5),
        ["primary", "backup"],
        clock,
    )
    assert c.update("primary", 1000.0, 100.0, clock()) is not None
    assert c.update("backup", 1000.5, 101.0, clock()) is None  # primary is live
    clock.t += 6
    t = c.update("backup", 1006.0, 102.0, clock())
    assert t is not None and t.source == "backup"  # primary silent: backup takes over
    clock.t += 1
    t = c.update("primary", 1007.0, 103.0, clock())
    assert t is not None and t.source == "primary"
    assert c.update("backup", 1007.1, 104.0, clock()) is None


def test_combined_time_never_goes_backwards() -> None:
    clock = Clock()
    c = Combiner("BTC/USD", CombineConfig(mode="median"), ["a", "b"], clock)
    c.update("a", 1000.5, 100.0, clock())
    t = c.update("b", 1000.2, 101.0, clock())  # b's clock is a little behind
    assert t is not None and t.ts == 1000.5


def kraken(url: str, pair: str = "XBT/USD") -> dict[str, Any]:
    return {"kind": "kraken", "url": url, "symbols": {pair: "BTC/USD"}}


async def test_two_live_feeds_are_written_as_their_median(store: Store) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def at(price: float) -> Any:
        return lambda pair, cid, i: kraken_ticker_frame(template, cid, pair, price)

    async with (
        FakeKraken(rec, at(100.0), Script(Behaviour(loop=True, interval=0.01))) as a,
        FakeKraken(rec, at(110.0), Script(Behaviour(loop=True, interval=0.01))) as b,
    ):
        cfg = feeds_config(
            {"a": kraken(a.url), "b": kraken(b.url)},
            combine={"BTC/USD": {"mode": "median", "max_age": 5}},
        )
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 20, what="20 combined ticks")
    ticks = await redis_ticks(store, "BTC/USD")
    both = [t for t in ticks if t.source == "median(a,b)"]
    assert both and all(t.value == pytest.approx(105.0) for t in both)
    assert all(t.source in ("a", "b", "median(a,b)") for t in ticks)


async def test_failover_to_backup_when_primary_dies(store: Store) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def at(price: float, n: int | None = None) -> Any:
        def f(pair: str, cid: int, i: int) -> str | None:
            if n is not None and i >= n:
                return None
            return kraken_ticker_frame(template, cid, pair, price)

        return f

    primary_script = Script(Behaviour(close_after=10, interval=0.01), Behaviour(silent_after=0))
    async with (
        FakeKraken(rec, at(100.0), primary_script) as p,
        FakeKraken(rec, at(101.0), Script(Behaviour(loop=True, interval=0.01))) as b,
    ):
        cfg = feeds_config(
            {"primary": kraken(p.url), "backup": kraken(b.url)},
            combine={
                "BTC/USD": {"mode": "failover", "sources": ["primary", "backup"], "max_age": 0.2}
            },
        )
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 10, what="primary ticks")
            await wait_until(lambda: sup.writer.written >= 25, what="backup ticks")
    ticks = await redis_ticks(store, "BTC/USD")
    sources = [t.source for t in ticks]
    assert sources[0] == "primary" and sources[-1] == "backup"
    first_backup = sources.index("backup")
    assert set(sources[first_backup:]) == {"backup"}  # no flapping once primary is gone
    assert {t.value for t in ticks if t.source == "backup"} == {101.0}


def test_same_observation_from_a_second_source_is_written_once() -> None:
    clock = Clock()
    c = Combiner(
        "US10Y",
        CombineConfig(mode="failover", sources=["treasury", "fred"], max_age=1),
        ["treasury", "fred"],
        clock,
    )
    assert c.update("treasury", 900.0, 4.25, clock()) is not None
    clock.t += 5  # the Treasury is quiet (daily data); FRED repeats the same close
    assert c.update("fred", 900.0, 4.25, clock()) is None
    assert c.update("fred", 500.0, 4.20, clock()) is None  # an older day: not written again


async def test_conflation_writes_at_most_one_tick_per_interval_and_the_latest_last(
    store: Store,
) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def frames(pair: str, cid: int, i: int) -> str | None:
        return kraken_ticker_frame(template, cid, pair, 100.0 + i) if i < 200 else None

    async with FakeKraken(rec, frames, Script(Behaviour(interval=0.002))) as fake:
        cfg = feeds_config({"k": kraken(fake.url)}, conflate=0.1, stale_after=30)
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(lambda: sup.feeds["k"].health.ticks == 200, what="200 accepted")
            await wait_until(lambda: sup.writer.written + sup.conflated == 200, what="settled")
    ticks = await redis_ticks(store, "BTC/USD")
    assert 2 <= len(ticks) < 60  # 200 ticks over ~0.4 s or more, 0.1 s apart at most
    assert ticks[-1].value == 299.0  # the newest value is never held back for good
    assert [t.value for t in ticks] == sorted(t.value for t in ticks)
