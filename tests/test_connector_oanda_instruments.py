"""OANDA: instruments checked one by one at start; one the account may not trade is reported
and skipped instead of failing the whole pricing stream (and every OANDA symbol with it).

The fake OANDA answers GET /v3/accounts/{id}/instruments like v20 (an ``instruments`` list
of Instrument objects) and refuses an unavailable instrument with 400 "Invalid value
specified for 'instruments'", there and in a pricing request that names it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from bot.store.redis_store import Store
from connectors.config import OandaFeedConfig
from connectors.feeds.oanda import api_base
from connectors.supervisor import FeedSupervisor
from tests.fake_feeds import (
    OANDA_ACCOUNT,
    OANDA_TOKEN,
    Behaviour,
    FakeOanda,
    Script,
    feeds_config,
    oanda_feed,
    recorded_oanda_lines,
    redis_ticks,
    running,
    wait_until,
)

TOKEN = OANDA_TOKEN
ACCOUNT = OANDA_ACCOUNT
SYMBOLS = {"EUR_USD": "EUR/USD", "USD_JPY": "USD/JPY", "SPX500_USD": "SPX"}


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return recorded_oanda_lines(monkeypatch)


def source(url: str, **kw: Any) -> dict[str, Any]:
    return oanda_feed(url, SYMBOLS, **kw)


def test_the_instruments_endpoint_is_on_the_rest_host() -> None:
    practice = OandaFeedConfig(kind="oanda", symbols={"EUR_USD": "EUR/USD"})
    assert api_base(practice) == "https://api-fxpractice.oanda.com"
    live = OandaFeedConfig(
        kind="oanda", url="https://stream-fxtrade.oanda.com/", symbols={"EUR_USD": "EUR/USD"}
    )
    assert api_base(live) == "https://api-fxtrade.oanda.com"
    local = OandaFeedConfig(kind="oanda", url="http://127.0.0.1:9", symbols={"EUR_USD": "EUR/USD"})
    assert api_base(local) == "http://127.0.0.1:9"


async def test_an_unavailable_cfd_is_skipped_and_the_other_instruments_stream(
    store: Store, lines: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(Behaviour(loop=True, interval=0.005))
    async with FakeOanda(lines, TOKEN, ACCOUNT, script, unavailable=["SPX500_USD"]) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": source(fake.url)}, stale_after=30), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written >= 6, what="FX ticks")
            serving = sup.serving_by_symbol()
        checks = fake.http.other_requests
        streams = fake.http.requests
    # one instruments request per instrument, with the token, and nothing else
    assert [r.query["instruments"] for r in checks] == list(SYMBOLS)
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in checks)
    assert [r.query["instruments"] for r in streams] == ["EUR_USD,USD_JPY"]  # one stream, kept
    ticks = await redis_ticks(store)
    assert {t.symbol for t in ticks} == {"EUR/USD", "USD/JPY"}
    status = (await store.feed_statuses())["oanda"]
    assert status["state"] == "ok"
    assert "SPX500_USD" in status["skipped"]
    assert "Invalid value specified for 'instruments'" in status["skipped"]["SPX500_USD"]
    assert serving == {"EUR/USD": ["oanda"], "USD/JPY": ["oanda"], "SPX": []}
    assert "skipping instruments this OANDA account cannot trade: SPX500_USD (SPX)" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in orjson.dumps(status).decode()


async def test_without_the_check_one_unavailable_instrument_fails_the_whole_stream(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    """What the check prevents: OANDA refuses the whole pricing request."""
    async with FakeOanda(lines, TOKEN, ACCOUNT, unavailable=["SPX500_USD"]) as fake:
        cfg = feeds_config({"oanda": source(fake.url, validate_instruments=False)})
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(lambda: len(fake.http.requests) >= 2, what="retries")
    assert sup.writer.written == 0
    assert "HTTP 400 from the pricing stream" in sup.feeds["oanda"].health.detail


async def test_no_available_instrument_is_reported_and_not_retried(
    store: Store, lines: list[dict[str, Any]]
) -> None:
    async with FakeOanda(lines, TOKEN, ACCOUNT, unavailable=list(SYMBOLS)) as fake:
        sup = FeedSupervisor(feeds_config({"oanda": source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.statuses()["oanda"]["state"] == "down", what="down")
            await asyncio.sleep(0.5)
        assert len(fake.http.other_requests) == len(SYMBOLS)  # checked once, not again
        assert fake.http.requests == []
    detail = (await store.feed_statuses())["oanda"]["detail"]
    assert "none of the configured instruments is available for this OANDA account" in detail
