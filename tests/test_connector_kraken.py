"""Kraken native websocket feed, end to end: fake Kraken v1 server -> connector -> Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from bot.store.redis_store import Store
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Recording,
    Script,
    WatchedStore,
    feeds_config,
    free_port,
    is_subsequence,
    kraken_ticker_frame,
    kraken_ticker_template,
    kraken_trade_payloads,
    read_recording,
    redis_ticks,
    running,
    wait_until,
)


@pytest.fixture
def ticker_rec() -> Recording:
    return read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))


@pytest.fixture
def trade_rec() -> Recording:
    return read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.48.0"))


def price(i: int) -> float:
    return 56218.3 + (i % 50) * 1.5  # a gentle walk from the recorded XBT/CHF last price


def ticker_frames(rec: Recording, n: int | None = None) -> Callable[[str, int, int], str | None]:
    template = kraken_ticker_template(rec)

    def frames(pair: str, channel_id: int, i: int) -> str | None:
        if n is not None and i >= n:
            return None
        return kraken_ticker_frame(template, channel_id, pair, price(i))

    return frames


def kraken_source(url: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "kraken", "url": url, "symbols": {"XBT/USD": "BTC/USD"}, **kw}


async def test_ticker_frames_become_canonical_ticks_in_redis(
    store: Store, ticker_rec: Recording
) -> None:
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 20)) as fake:
        sup = FeedSupervisor(
            feeds_config({"kraken": kraken_source(fake.url)}, stale_after=30), store
        )
        async with running(sup):
            await wait_until(lambda: sup.feeds["kraken"].health.ticks == 20, what="20 ticks")
            await wait_until(lambda: sup.writer.written == 20, what="written")
    ticks = await redis_ticks(store)
    assert [t.value for t in ticks] == [price(i) for i in range(20)]
    assert {t.symbol for t in ticks} == {"BTC/USD"}
    assert {t.source for t in ticks} == {"kraken"}
    # the subscription has the recorded shape
    recorded = orjson.loads(ticker_rec.sent[0])
    assert fake.subscriptions[0].keys() == recorded.keys()
    assert fake.subscriptions[0]["subscription"] == {"name": "ticker"}
    assert fake.subscriptions[0]["pair"] == ["XBT/USD"]


async def test_mid_price_uses_best_bid_and_ask(store: Store, ticker_rec: Recording) -> None:
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 3)) as fake:
        sup = FeedSupervisor(
            feeds_config({"kraken": kraken_source(fake.url, price="mid")}, stale_after=30), store
        )
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 3, what="3 ticks")
    ticks = await redis_ticks(store)
    assert [t.value for t in ticks] == pytest.approx([price(i) for i in range(3)])


async def test_trades_keep_exchange_time_and_drop_duplicates_and_out_of_order(
    store: Store, trade_rec: Recording
) -> None:
    payloads = kraken_trade_payloads(trade_rec)
    trades = [t for p in payloads for t in p]
    shift = time.time() - float(trades[0][2]) - 60  # recorded spacing, a minute ago
    restamped = [[p, v, f"{float(ts) + shift:.6f}", *rest] for p, v, ts, *rest in trades]
    restamped.sort(key=lambda t: float(t[2]))
    frames = [[[t]] for t in restamped]
    frames.insert(3, [[restamped[2]]])  # a duplicate of the previous trade
    frames.insert(6, [[restamped[0]]])  # an old trade again: out of order

    def frame(pair: str, channel_id: int, i: int) -> str | None:
        if i >= len(frames):
            return None
        return orjson.dumps([channel_id, frames[i][0], "trade", pair]).decode()

    async with FakeKraken(trade_rec, frame) as fake:
        sup = FeedSupervisor(
            feeds_config({"kraken": kraken_source(fake.url, channel="trade")}, stale_after=30),
            store,
        )
        async with running(sup):
            await wait_until(lambda: sup.writer.written == len(restamped), what="all trades")
            await wait_until(
                lambda: sup.feeds["kraken"].health.msgs >= len(frames) + 2, what="all frames read"
            )
    ticks = await redis_ticks(store)
    assert [t.ts for t in ticks] == [float(t[2]) for t in restamped]
    assert [t.value for t in ticks] == [float(t[0]) for t in restamped]
    status = (await store.feed_statuses())["kraken"]
    assert status["dropped"] == {"duplicate": 1, "out_of_order": 1}


async def test_malformed_frames_are_counted_and_dropped_without_stopping_the_feed(
    store: Store, ticker_rec: Recording
) -> None:
    template = kraken_ticker_template(ticker_rec)
    bad_c = {**template, "c": ["NaN", "1.0"]}
    neg = {**template, "c": ["-5.0", "1.0"]}
    zero = {**template, "c": ["0.00000", "1.0"]}
    no_c = {k: v for k, v in template.items() if k != "c"}
    inject = {
        2: "this is not json {",
        4: orjson.dumps([468, bad_c, "ticker", "XBT/USD"]).decode(),
        5: orjson.dumps([468, neg, "ticker", "XBT/USD"]).decode(),
        6: orjson.dumps([468, zero, "ticker", "XBT/USD"]).decode(),
        7: orjson.dumps([468, no_c, "ticker", "XBT/USD"]).decode(),
        8: orjson.dumps([468, {**template, "c": ["abc", "1"]}, "ticker", "XBT/USD"]).decode(),
        9: "[]",
    }
    script = Script(Behaviour(inject=inject))
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 12), script) as fake:
        sup = FeedSupervisor(
            feeds_config({"kraken": kraken_source(fake.url)}, stale_after=30), store
        )
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 12, what="12 good ticks")
            await wait_until(
                lambda: sum(sup.feeds["kraken"].health.dropped.values()) == 7, what="7 drops"
            )
    status = (await store.feed_statuses())["kraken"]
    assert status["state"] == "ok"
    assert status["dropped"] == {"malformed": 2, "nan": 1, "non_positive": 2, "missing_field": 2}
    assert fake.script.connections == 1  # never reconnected because of garbage


async def test_abrupt_close_reconnects_resubscribes_and_keeps_every_accepted_tick(
    store: Store, ticker_rec: Recording
) -> None:
    script = Script(Behaviour(close_after=15), Behaviour(loop=True, interval=0.005))
    watched = WatchedStore(store)
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 40), script) as fake:
        sup = FeedSupervisor(feeds_config({"kraken": kraken_source(fake.url)}), watched)
        async with running(sup):
            await wait_until(lambda: script.connections >= 2, what="a reconnect")
            await wait_until(lambda: sup.feeds["kraken"].health.ticks >= 40, what="more ticks")
            await wait_until(lambda: watched.states["kraken"][-1] == "ok", what="ok again")
        accepted = sup.feeds["kraken"].health.ticks
    assert is_subsequence(["ok", "down", "ok"], watched.states["kraken"])
    assert len(fake.subscriptions) >= 2
    assert fake.subscriptions[1] == fake.subscriptions[0]
    ticks = await redis_ticks(store, "BTC/USD")
    assert len(ticks) == accepted
    assert [t.value for t in ticks[:15]] == [price(i) for i in range(15)]


async def test_silent_socket_is_detected_as_stale_and_reconnected(
    store: Store, ticker_rec: Recording
) -> None:
    script = Script(Behaviour(silent_after=5), Behaviour(loop=True, interval=0.005))
    watched = WatchedStore(store)
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 30), script) as fake:
        sup = FeedSupervisor(feeds_config({"kraken": kraken_source(fake.url)}), watched)
        async with running(sup):
            await wait_until(lambda: script.connections >= 2, what="a reconnect")
            await wait_until(
                lambda: (
                    watched.states["kraken"][-1] == "ok" and "stale" in watched.states["kraken"]
                ),
                what="ok after stale",
            )
    assert is_subsequence(["ok", "stale", "ok"], watched.states["kraken"])
    assert "down" not in watched.states["kraken"]
    status = (await store.feed_statuses())["kraken"]
    assert status["errors"] >= 1
    del fake


async def test_server_down_at_start_then_up_while_other_feed_keeps_flowing(
    store: Store, ticker_rec: Recording
) -> None:
    port = free_port()
    watched = WatchedStore(store)
    late = FakeKraken(ticker_rec, ticker_frames(ticker_rec, 10), port=port)
    async with FakeKraken(
        ticker_rec, ticker_frames(ticker_rec), Script(Behaviour(loop=True, interval=0.002))
    ) as steady:
        cfg = feeds_config(
            {
                "steady": {"kind": "kraken", "url": steady.url, "symbols": {"EUR/USD": "EUR/USD"}},
                "late": kraken_source(f"ws://127.0.0.1:{port}"),
            }
        )
        sup = FeedSupervisor(cfg, watched)
        async with running(sup):
            await wait_until(
                lambda: watched.states.get("late", [])[-1:] == ["down"], what="late down"
            )
            before = sup.feeds["steady"].health.ticks
            await wait_until(lambda: sup.feeds["late"].health.errors >= 2, what="retries")
            assert sup.feeds["steady"].health.ticks > before  # unaffected by the other
            async with late:
                await wait_until(lambda: sup.feeds["late"].health.ticks == 10, what="late ticks")
                await wait_until(lambda: watched.states["late"][-1] == "ok", what="late ok")
    assert is_subsequence(["down", "ok"], watched.states["late"])
    assert watched.states["steady"][-1] == "ok" and "down" not in watched.states["steady"]
    assert len(await redis_ticks(store, "BTC/USD")) == 10


async def test_quiet_feed_in_a_closed_market_is_closed_not_stale(
    store: Store, ticker_rec: Recording
) -> None:
    saturday = 1_783_800_000.0  # Sat 2026-07-11 ~20:00 UTC: the FX week is closed
    offset = saturday - time.time()
    watched = WatchedStore(store)
    async with FakeKraken(ticker_rec, ticker_frames(ticker_rec, 0)) as fake:
        sup = FeedSupervisor(
            feeds_config(
                {
                    "fx": {
                        "kind": "kraken",
                        "url": fake.url,
                        "schedule": "fx",
                        "symbols": {"EUR/USD": "EUR/USD"},
                    }
                }
            ),
            watched,
            clock=lambda: time.time() + offset,
        )
        async with running(sup):
            await wait_until(lambda: watched.states.get("fx", [])[-1:] == ["closed"], what="closed")
            await wait_until(
                lambda: time.time() > sup.feeds["fx"].session_start - offset + 1.0,
                what="well past stale_after",
            )
    assert watched.states["fx"] == ["starting", "closed"]
    assert fake.script.connections == 1


async def test_trades_stamped_far_in_the_future_or_past_are_dropped(
    store: Store, trade_rec: Recording
) -> None:
    payload = kraken_trade_payloads(trade_rec)[0][0]
    now = time.time()
    stamps = [now - 1.0, now + 3600.0, now - 3600.0, now - 0.5]

    def frame(pair: str, channel_id: int, i: int) -> str | None:
        if i >= len(stamps):
            return None
        trade = [payload[0], payload[1], f"{stamps[i]:.6f}", *payload[3:]]
        return orjson.dumps([channel_id, [trade], "trade", pair]).decode()

    async with FakeKraken(trade_rec, frame) as fake:
        sup = FeedSupervisor(
            feeds_config(
                {
                    "kraken": kraken_source(
                        fake.url, channel="trade", max_future="10s", max_past="5m"
                    )
                },
                stale_after=30,
            ),
            store,
        )
        async with running(sup):
            await wait_until(
                lambda: sup.feeds["kraken"].health.msgs >= len(stamps) + 2, what="all frames"
            )
            await wait_until(lambda: sup.writer.written == 2, what="2 good trades")
    assert [t.ts for t in await redis_ticks(store)] == [
        float(f"{stamps[0]:.6f}"),
        float(f"{stamps[3]:.6f}"),
    ]
    status = (await store.feed_statuses())["kraken"]
    assert status["dropped"] == {"future": 1, "too_old": 1}
