"""ccxt.pro feed end to end against a fake OKX v5 (REST instruments + public websocket)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bot.store.redis_store import Store
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeOkx,
    Recording,
    Script,
    WatchedStore,
    feeds_config,
    is_subsequence,
    okx_ticker_templates,
    read_recording,
    redis_ticks,
    running,
    wait_until,
)


@pytest.fixture
def okx_rec() -> Recording:
    return read_recording(shared_path("fixtures", "cryptofeed", "OKX.ws.1.0"))


def okx_source(fake: FakeOkx, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "ccxt",
        "exchange": "okx",
        "symbols": {"BTC/USDT": "BTC/USD"},
        "urls": {"api": {"ws": fake.ws_url, "rest": fake.http.url}},
        "options": {"fetchMarkets": {"types": ["spot"]}},
        **kw,
    }


async def test_recorded_okx_tickers_flow_through_ccxt_into_redis(
    store: Store, okx_rec: Recording
) -> None:
    templates = okx_ticker_templates(okx_rec)
    async with FakeOkx(templates, Script(Behaviour(interval=0.01)), restamp=True) as fake:
        sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 10, what="10 ticks")
    ticks = await redis_ticks(store)
    recorded_last = [float(t["data"][0]["last"]) for t in templates]
    values = [t.value for t in ticks]
    # ccxt's watchTicker hands over the newest ticker: updates that arrive together are
    # conflated by ccxt, so the written values are the recorded ones, in order, maybe fewer
    assert len(values) >= 10 and is_subsequence(values, recorded_last)
    assert {t.symbol for t in ticks} == {"BTC/USD"} and {t.source for t in ticks} == {"okx"}
    sub = fake.subscriptions[0]
    recorded_sub = orjson.loads(okx_rec.sent[0])
    assert sub["op"] == recorded_sub["op"] == "subscribe"
    assert sub["args"] == [{"channel": "tickers", "instId": "BTC-USDT"}]


async def test_exchange_time_is_kept(store: Store, okx_rec: Recording) -> None:
    templates = okx_ticker_templates(okx_rec)
    async with FakeOkx(templates, Script(Behaviour(interval=0.01)), restamp=True) as fake:
        sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 3, what="3 ticks")
    sent_ts = [int(orjson.loads(f)["data"][0]["ts"]) / 1000 for f in fake.sent]
    ticks = await redis_ticks(store)
    assert len(ticks) >= 3 and is_subsequence([t.ts for t in ticks], sent_ts)


async def test_nonsense_prices_are_dropped_and_the_stream_continues(
    store: Store, okx_rec: Recording
) -> None:
    templates = okx_ticker_templates(okx_rec)
    bad = []
    for last in ("NaN", "-1", "0"):
        m = orjson.loads(orjson.dumps(templates[0]))
        m["data"][0]["last"] = last
        bad.append(orjson.dumps(m).decode())
    inject = {2: bad[0], 4: bad[1], 6: bad[2], 8: '{"arg": {"channel": "tickers"', 9: "[1,2"}
    script = Script(Behaviour(interval=0.01, inject=inject))
    async with FakeOkx(templates, script, restamp=True) as fake:
        sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 12, what="12 good ticks")
            await wait_until(
                lambda: sum(sup.feeds["okx"].health.dropped.values()) >= 5, what="drops"
            )
    dropped = (await store.feed_statuses())["okx"]["dropped"]
    # NaN breaks ccxt's own parsing (caught: malformed), like the two truncated frames;
    # ccxt turns a "0" last price into None (missing_field); -1 reaches our validator.
    assert dropped == {"malformed": 3, "non_positive": 1, "missing_field": 1}
    assert fake.script.connections == 1
    assert all(t.value > 0 for t in await redis_ticks(store))


async def test_abrupt_close_reconnects_and_resubscribes(store: Store, okx_rec: Recording) -> None:
    templates = okx_ticker_templates(okx_rec)
    script = Script(Behaviour(close_after=6, interval=0.005), Behaviour(loop=True, interval=0.005))
    watched = WatchedStore(store)
    async with FakeOkx(templates, script, restamp=True) as fake:
        sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}), watched)
        async with running(sup):
            await wait_until(lambda: len(fake.subscriptions) >= 2, what="resubscribed")
            await wait_until(
                lambda: watched.states["okx"][-1] == "ok" and "down" in watched.states["okx"],
                what="ok again",
            )
        accepted = sup.feeds["okx"].health.ticks
    assert is_subsequence(["ok", "down", "ok"], watched.states["okx"])
    assert fake.subscriptions[1]["args"] == fake.subscriptions[0]["args"]
    assert len(await redis_ticks(store)) == accepted


async def test_silent_socket_goes_stale_then_recovers(store: Store, okx_rec: Recording) -> None:
    templates = okx_ticker_templates(okx_rec)
    script = Script(Behaviour(silent_after=4, interval=0.005), Behaviour(loop=True, interval=0.005))
    watched = WatchedStore(store)
    async with FakeOkx(templates, script, restamp=True) as fake:
        sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}), watched)
        async with running(sup):
            await wait_until(
                lambda: (
                    "stale" in watched.states.get("okx", []) and watched.states["okx"][-1] == "ok"
                ),
                what="stale then ok",
            )
    assert is_subsequence(["ok", "stale", "ok"], watched.states["okx"])
    assert fake.script.connections >= 2


async def test_exchange_down_at_start_then_up(store: Store, okx_rec: Recording) -> None:
    templates = okx_ticker_templates(okx_rec)
    watched = WatchedStore(store)
    fake = FakeOkx(templates, Script(Behaviour(loop=True, interval=0.005)), restamp=True)
    sup = FeedSupervisor(feeds_config({"okx": okx_source(fake)}), watched)
    async with running(sup):
        # the error count and the state change are two steps: wait for both (a loaded machine
        # can be between them when the count is read)
        await wait_until(
            lambda: sup.feeds["okx"].health.errors >= 2 and watched.states["okx"][-1] == "down",
            what="failed attempts, reported down",
        )
        detail = sup.statuses()["okx"]["detail"]
        async with fake:
            await wait_until(lambda: watched.states["okx"][-1] == "ok", what="ok")
            await wait_until(lambda: sup.writer.written >= 5, what="ticks")
    assert is_subsequence(["starting", "down", "ok"], watched.states["okx"])
    assert "ExchangeNotAvailable" in str(detail) and "reconnecting in" in str(detail)
