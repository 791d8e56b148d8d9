"""OANDA v20 pricing stream end to end: fake chunked NDJSON server -> connector -> Redis."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest

from bot.store.redis_store import Store
from connectors.feeds.oanda import parse_oanda_time
from connectors.supervisor import FeedSupervisor
from tests.fake_feeds import (
    OANDA_ACCOUNT,
    OANDA_TOKEN,
    Behaviour,
    FakeOanda,
    Script,
    WatchedStore,
    feeds_config,
    is_subsequence,
    oanda_feed,
    recorded_oanda_lines,
    redis_ticks,
    running,
    wait_until,
)

TOKEN = OANDA_TOKEN
ACCOUNT = OANDA_ACCOUNT


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return recorded_oanda_lines(monkeypatch)


def oanda_source(url: str, **kw: Any) -> dict[str, Any]:
    return oanda_feed(url, {"EUR_USD": "EUR/USD", "USD_JPY": "USD/JPY"}, **kw)


def test_nanosecond_times_are_parsed() -> None:
    assert parse_oanda_time("2016-10-27T08:38:45.664613867Z") == pytest.approx(
        1477557525.664613867, abs=1e-6
    )


async def test_recorded_prices_become_mid_ticks_at_oanda_time(
    store: Store, lines: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOanda(lines, TOKEN, ACCOUNT, restamp=False) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 3, what="3 prices")
    ticks = await redis_ticks(store)
    assert [(t.symbol, t.value) for t in ticks] == [
        ("USD/JPY", pytest.approx((114.295 + 114.312) / 2)),
        ("EUR/USD", pytest.approx((1.09177 + 1.09188) / 2)),
        ("USD/JPY", pytest.approx((114.298 + 114.315) / 2)),
    ]
    assert ticks[1].ts == pytest.approx(parse_oanda_time("2016-10-27T08:38:45.664613867Z"))
    req = fake.http.requests[0]
    assert req.query["instruments"] == "EUR_USD,USD_JPY"
    assert TOKEN not in caplog.text


async def test_rejected_token_is_down_and_never_shown(
    store: Store,
    lines: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OANDA_API_TOKEN", "bad-" + TOKEN)
    async with FakeOanda(lines, TOKEN, ACCOUNT) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.statuses()["oanda"]["state"] == "down", what="down")
    status = (await store.feed_statuses())["oanda"]
    assert "HTTP 401" in status["detail"]
    assert TOKEN not in orjson.dumps(status).decode() and TOKEN not in caplog.text


async def test_missing_credentials_are_reported_not_retried(
    store: Store, lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OANDA_API_TOKEN")
    async with FakeOanda(lines, TOKEN, ACCOUNT) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.statuses()["oanda"]["state"] == "down", what="down")
        assert fake.http.requests == []
    assert "OANDA_API_TOKEN" in (await store.feed_statuses())["oanda"]["detail"]


async def test_stream_cut_mid_way_reconnects_and_keeps_accepted_ticks(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    script = Script(
        Behaviour(close_after=5, loop=True, interval=0.005), Behaviour(loop=True, interval=0.005)
    )
    watched = WatchedStore(store)
    async with FakeOanda(lines, TOKEN, ACCOUNT, script) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}), watched)
        async with running(sup):
            await wait_until(lambda: script.connections >= 2, what="reconnect")
            await wait_until(
                lambda: watched.states["oanda"][-1] == "ok" and "down" in watched.states["oanda"],
                what="ok again",
            )
        accepted = sup.feeds["oanda"].health.ticks
    assert is_subsequence(["ok", "down", "ok"], watched.states["oanda"])
    assert len(await redis_ticks(store)) == accepted >= 5


async def test_no_heartbeat_means_a_dead_stream_and_a_reconnect(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    script = Script(
        Behaviour(silent_after=3, loop=True, interval=0.005), Behaviour(loop=True, interval=0.005)
    )
    watched = WatchedStore(store)
    async with FakeOanda(lines, TOKEN, ACCOUNT, script) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}), watched)
        async with running(sup):
            await wait_until(lambda: script.connections >= 2, what="reconnect")
            await wait_until(
                lambda: watched.states["oanda"][-1] == "ok" and len(watched.states["oanda"]) > 2,
                what="ok again",
            )
    assert watched.states["oanda"][-1] == "ok"
    assert {"stale", "down"} & set(watched.states["oanda"])
    del fake


async def test_weekend_heartbeats_only_is_closed_not_stale(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    saturday = 1_783_800_000.0  # Sat 2026-07-11 20:00 UTC
    offset = saturday - time.time()
    watched = WatchedStore(store)
    async with FakeOanda([], TOKEN, ACCOUNT) as fake:  # no prices, heartbeats only
        sup = FeedSupervisor(
            feeds_config({"oanda": oanda_source(fake.url, schedule="fx")}),
            watched,
            clock=lambda: time.time() + offset,
        )
        async with running(sup):
            await wait_until(
                lambda: watched.states.get("oanda", [])[-1:] == ["closed"], what="closed"
            )
            t0 = time.monotonic()
            await wait_until(lambda: time.monotonic() - t0 > 1.0, what="a second")
    assert watched.states["oanda"] == ["starting", "closed"]
    assert fake.script.connections == 1
    assert sup.feeds["oanda"].health.msgs > 5  # heartbeats kept the stream alive


async def test_non_tradeable_and_malformed_lines_are_dropped(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    halted = {**lines[2], "status": "non-tradeable"}
    no_bids = {k: v for k, v in lines[2].items() if k != "bids"}
    inject = {1: "{not json", 2: orjson.dumps(halted).decode(), 3: orjson.dumps(no_bids).decode()}
    script = Script(Behaviour(inject=inject, interval=0.005))
    async with FakeOanda(lines, TOKEN, ACCOUNT, script, restamp=False) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": oanda_source(fake.url)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 3, what="3 prices")
            await wait_until(
                lambda: sum(sup.feeds["oanda"].health.dropped.values()) == 3, what="3 drops"
            )
    status = (await store.feed_statuses())["oanda"]
    assert status["dropped"] == {"malformed": 1, "not_tradeable": 1, "missing_field": 1}
    assert status["state"] == "ok"
    del fake
