"""Yahoo chart API live feed: a local server answering the v8 chart format -> Redis ticks."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from bot.store.redis_store import Store
from connectors.feeds.yahoo import parse_quote
from connectors.supervisor import FeedSupervisor
from tests.fake_feeds import FakeHttp, feeds_config, redis_ticks, running, wait_until

NOW = int(time.time()) - 30


def chart(price: float, ts: int) -> bytes:
    return orjson.dumps(
        {
            "chart": {
                "result": [
                    {
                        "meta": {
                            "symbol": "^GSPC",
                            "exchangeTimezoneName": "America/New_York",
                            "regularMarketPrice": price,
                            "regularMarketTime": ts,
                        },
                        "timestamp": [ts - 60, ts],
                        "indicators": {"quote": [{"close": [price - 1, price]}]},
                    }
                ],
                "error": None,
            }
        }
    )


NOT_FOUND = orjson.dumps(
    {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found"}}}
)


def source(url: str, symbols: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "yahoo",
        "url": url + "/v8/finance/chart/{ticker}",
        "interval": 0.05,
        "symbols": symbols,
    }


def test_the_quote_is_read_from_meta_with_its_own_time() -> None:
    assert parse_quote(chart(5431.5, 1718049600)) == (1718049600.0, 5431.5)


def test_an_error_answer_names_yahoos_reason() -> None:
    try:
        parse_quote(NOT_FOUND)
    except ValueError as e:
        assert "Not Found" in str(e)
    else:  # pragma: no cover
        raise AssertionError("a chart error must be rejected")


async def test_index_levels_become_ticks_stamped_at_the_quote_time_once(store: Store) -> None:
    quotes = {"^GSPC": chart(5431.5, NOW), "^VIX": chart(12.3, NOW - 5)}

    async def handler(request: web.Request) -> web.Response:
        assert request.query["interval"] == "1m"
        assert request.raw_path.startswith("/v8/finance/chart/%5E")  # the ticker is quoted
        ticker = request.path.split("/")[-1]
        return web.Response(body=quotes[ticker], content_type="application/json")

    async with FakeHttp() as fake:
        fake.route("/v8/finance/chart/^GSPC", handler)
        fake.route("/v8/finance/chart/^VIX", handler)
        cfg = feeds_config({"yahoo": source(fake.url, {"^GSPC": "SPX", "^VIX": "VIX"})})
        async with running(FeedSupervisor(cfg, store)):
            await wait_until(lambda: len(fake.requests) >= 6, what="three polls")
    spx = await redis_ticks(store, "SPX")
    assert [(t.ts, t.value) for t in spx] == [(float(NOW), 5431.5)]  # repeated polls: one tick
    assert [(t.ts, t.value) for t in await redis_ticks(store, "VIX")] == [(float(NOW - 5), 12.3)]


async def test_one_unknown_ticker_costs_only_itself(store: Store) -> None:
    async def good(request: web.Request) -> web.Response:
        return web.Response(body=chart(5431.5, NOW), content_type="application/json")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, body=NOT_FOUND, content_type="application/json")

    async with FakeHttp() as fake:
        fake.route("/v8/finance/chart/^GSPC", good)
        fake.route("/v8/finance/chart/NOPE", missing)
        cfg = feeds_config({"yahoo": source(fake.url, {"^GSPC": "SPX", "NOPE": "NDX"})})
        async with running(FeedSupervisor(cfg, store)):
            await wait_until(lambda: len(fake.requests) >= 4, what="two polls")
        status = (await store.feed_statuses())["yahoo"]
    assert len(await redis_ticks(store, "SPX")) == 1
    assert await redis_ticks(store, "NDX") == []
    assert status["state"] == "ok"
    assert status["errors"] >= 1
