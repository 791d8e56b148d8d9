"""Polled sources end to end: fake NY Fed, FRED and Treasury servers -> connectors -> Redis."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiohttp import web

from bot.store.redis_store import Store
from connectors.publication import known_at, next_business_day
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    FakeHttp,
    WatchedStore,
    feeds_config,
    free_port,
    is_subsequence,
    read_vcr_cassette,
    redis_ticks,
    running,
    static_body,
    treasury_atom,
    wait_until,
)

NY = ZoneInfo("America/New_York")
SOFR_PATH = "/api/rates/secured/sofr/last/5.json"


def ny(y: int, m: int, d: int, h: int) -> float:
    return datetime(y, m, d, h, tzinfo=NY).timestamp()


@pytest.fixture
def nyfed_cassette() -> Path:
    return shared_path("fixtures", "nyfed", "openbb_vcr_cassette_sofr_search_2024-06.yaml")


def nyfed_handler(cassette: Path) -> Any:
    """Serve the recorded response: gzip body and the real headers (Date, Cache-Control...)."""
    rec = read_vcr_cassette(cassette)
    keep = {
        k: v for k, v in rec.headers.items() if k.lower() not in ("content-length", "connection")
    }

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=rec.status, body=rec.body, headers=keep)

    return handler


def nyfed_source(url: str, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "nyfed",
        "url": url + "/api/rates/secured/sofr/last/{n}.json",
        "interval": 0.05,
        "max_past": 0,
        **kw,
    }


# ---- stamping -----------------------------------------------------------------------------


def test_publication_times_follow_new_york_rules() -> None:
    from datetime import date

    # yields: 16:00 New York on the date (EDT in June: 20:00 UTC)
    assert known_at(date(2024, 6, 6), "close") == ny(2024, 6, 6, 16)
    # SOFR for a Friday is published on Monday 08:00 New York
    assert known_at(date(2024, 6, 7), "next_morning") == ny(2024, 6, 10, 8)
    # IORB: midnight New York starting its effective date
    assert known_at(date(2024, 6, 6), "effective") == ny(2024, 6, 6, 0)
    assert next_business_day(date(2024, 6, 6)) == date(2024, 6, 7)


# ---- NY Fed --------------------------------------------------------------------------------


async def test_nyfed_sofr_is_stamped_when_published_not_when_fetched(
    store: Store, nyfed_cassette: Path
) -> None:
    async with FakeHttp() as fake:
        fake.route(SOFR_PATH, nyfed_handler(nyfed_cassette))
        sup = FeedSupervisor(feeds_config({"nyfed": nyfed_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: len(fake.requests) >= 3, what="three polls")
    ticks = await redis_ticks(store, "SOFR")
    assert [t.value for t in ticks] == [5.35, 5.33, 5.33, 5.33]  # once each, oldest first
    assert [t.ts for t in ticks] == [ny(2024, 6, d, 8) for d in (4, 5, 6, 7)]
    assert {t.source for t in ticks} == {"nyfed"}
    assert fake.requests[0].path == SOFR_PATH


async def test_http_5xx_marks_feed_down_and_it_recovers(store: Store, nyfed_cassette: Path) -> None:
    watched = WatchedStore(store)
    async with FakeHttp() as fake:
        fake.route(SOFR_PATH, nyfed_handler(nyfed_cassette))
        sup = FeedSupervisor(feeds_config({"nyfed": nyfed_source(fake.url)}), watched)
        async with running(sup):
            await wait_until(lambda: watched.states.get("nyfed", [])[-1:] == ["ok"], what="ok")
            fake.fail(503, times=2)
            await wait_until(lambda: "down" in watched.states["nyfed"], what="down")
            await wait_until(lambda: watched.states["nyfed"][-1] == "ok", what="ok again")
    assert is_subsequence(["ok", "down", "ok"], watched.states["nyfed"])
    status = (await store.feed_statuses())["nyfed"]
    assert status["errors"] == 2
    assert len(await redis_ticks(store, "SOFR")) == 4  # nothing lost, nothing doubled


async def test_http_429_waits_at_least_retry_after(store: Store, nyfed_cassette: Path) -> None:
    async with FakeHttp() as fake:
        fake.route(SOFR_PATH, nyfed_handler(nyfed_cassette))
        fake.fail(429, headers={"Retry-After": "1"})
        sup = FeedSupervisor(feeds_config({"nyfed": nyfed_source(fake.url)}), store)
        async with running(sup):
            # the second request arrives before its answer is applied: wait for the state too
            await wait_until(
                lambda: len(fake.requests) >= 2 and sup.statuses()["nyfed"]["state"] == "ok",
                what="the retry, answered",
            )
    assert fake.request_times[1] - fake.request_times[0] >= 1.0  # not the 0.05s backoff
    assert sup.feeds["nyfed"].health.errors == 1


async def test_source_down_at_start_then_up(store: Store, nyfed_cassette: Path) -> None:
    port = free_port()
    watched = WatchedStore(store)
    fake = FakeHttp(port)
    fake.route(SOFR_PATH, nyfed_handler(nyfed_cassette))
    sup = FeedSupervisor(feeds_config({"nyfed": nyfed_source(f"http://127.0.0.1:{port}")}), watched)
    async with running(sup):
        await wait_until(lambda: watched.states.get("nyfed", [])[-1:] == ["down"], what="down")
        async with fake:
            await wait_until(lambda: watched.states["nyfed"][-1] == "ok", what="ok")
    assert is_subsequence(["starting", "down", "ok"], watched.states["nyfed"])
    assert len(await redis_ticks(store, "SOFR")) == 4


async def test_malformed_body_is_counted_and_retried(store: Store, nyfed_cassette: Path) -> None:
    calls = {"n": 0}
    good = nyfed_handler(nyfed_cassette)

    async def flaky(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(
                body=b'{"refRates": [ {"effectiveDate": "2024-06', content_type="application/json"
            )
        return await good(request)

    async with FakeHttp() as fake:
        fake.route(SOFR_PATH, flaky)
        sup = FeedSupervisor(feeds_config({"nyfed": nyfed_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 4, what="4 ticks")
    status = (await store.feed_statuses())["nyfed"]
    assert status["dropped"] == {"malformed": 1}
    assert status["state"] == "ok"


# ---- FRED keyless CSV (fredgraph.csv) ---------------------------------------------------------


def fredgraph_bodies() -> dict[str, str]:
    """fredgraph.csv answers, values from the recorded SOFR observations (the recordings hold
    no CSV; the format is FRED's `observation_date,SERIES` with "" for a day without value)."""
    doc = orjson.loads(
        shared_path(
            "fixtures", "fred", "series_observations_SOFR_2024-06-01_2024-06-06.json"
        ).read_bytes()
    )
    sofr = "".join(f"{o['date']},{o['value']}\n" for o in doc["observations"])
    return {
        "SOFR": "observation_date,SOFR\n" + sofr,
        "SP500": "observation_date,SP500\n2024-06-18,5487.03\n2024-06-19,\n2024-06-20,5473.17\n",
    }


async def test_fred_csv_needs_no_key_and_stamps_each_series(store: Store) -> None:
    bodies = fredgraph_bodies()

    async def handler(request: web.Request) -> web.Response:
        assert "cosd" in request.query
        return web.Response(text=bodies[request.query["id"]], content_type="text/csv")

    async with FakeHttp() as fake:
        fake.route("/graph/fredgraph.csv", handler)
        sup = FeedSupervisor(
            feeds_config(
                {
                    "fred_csv": {
                        "kind": "fred_csv",
                        "url": fake.url + "/graph/fredgraph.csv",
                        "interval": 0.05,
                        "max_past": 0,
                        "symbols": {"SOFR": "SOFR", "SP500": "SPX"},
                    }
                }
            ),
            store,
        )
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 6, what="6 ticks")
    sofr = await redis_ticks(store, "SOFR")
    assert [t.ts for t in sofr] == [ny(2024, 6, d, 8) for d in (4, 5, 6, 7)]
    spx = await redis_ticks(store, "SPX")
    assert [(t.ts, t.value) for t in spx] == [
        (ny(2024, 6, 18, 16), 5487.03),
        (ny(2024, 6, 20, 16), 5473.17),
    ]
    status = (await store.feed_statuses())["fred_csv"]
    assert status["state"] == "ok" and status["dropped"]["missing_value"] >= 1


# ---- FRED ------------------------------------------------------------------------------------

FRED_KEY = "k3y-that-must-never-be-logged"


def fred_handler(bodies: dict[str, bytes]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        if request.query.get("api_key") != FRED_KEY:
            return web.json_response(
                {
                    "error_code": 400,
                    "error_message": "Bad Request.  The value for variable "
                    "api_key is not registered.",
                },
                status=400,
            )
        body = bodies.get(request.query.get("series_id", ""))
        if body is None:
            return web.json_response(
                {"error_code": 400, "error_message": "Bad Request."}, status=400
            )
        return web.Response(body=body, content_type="application/json")

    return handler


def fred_bodies() -> dict[str, bytes]:
    sofr = shared_path(
        "fixtures", "fred", "series_observations_SOFR_2024-06-01_2024-06-06.json"
    ).read_bytes()
    # The recordings have no "." (FRED's no-value marker): build a body of the recorded shape.
    doc = orjson.loads(sofr)
    doc["observations"] = [
        {**doc["observations"][0], "date": "2024-06-18", "value": "4.25"},
        {**doc["observations"][0], "date": "2024-06-19", "value": "."},  # Juneteenth
        {**doc["observations"][0], "date": "2024-06-20", "value": "4.27"},
    ]
    return {"SOFR": sofr, "DGS10": orjson.dumps(doc)}


def fred_source(url: str, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "fred",
        "url": url + "/fred/series/observations",
        "interval": 0.05,
        "max_past": 0,
        "symbols": {"SOFR": "SOFR", "DGS10": "US10Y"},
        **kw,
    }


async def test_fred_series_become_stamped_ticks_and_dot_is_no_value(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FRED_API_KEY", FRED_KEY)
    caplog.set_level(logging.DEBUG)
    async with FakeHttp() as fake:
        fake.route("/fred/series/observations", fred_handler(fred_bodies()))
        fake.fail(500)  # one failure, so an error message is produced and checked too
        sup = FeedSupervisor(feeds_config({"fred": fred_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 6, what="6 ticks")
            await wait_until(lambda: len(fake.requests) >= 5, what="polls")
    sofr = await redis_ticks(store, "SOFR")
    assert [t.value for t in sofr] == [5.35, 5.33, 5.33, 5.33]
    assert [t.ts for t in sofr] == [ny(2024, 6, d, 8) for d in (4, 5, 6, 7)]
    us10y = await redis_ticks(store, "US10Y")
    assert [(t.ts, t.value) for t in us10y] == [
        (ny(2024, 6, 18, 16), 4.25),
        (ny(2024, 6, 20, 16), 4.27),
    ]
    q = fake.requests[-1].query
    assert q["file_type"] == "json" and q["api_key"] == FRED_KEY
    status = (await store.feed_statuses())["fred"]
    assert status["dropped"]["missing_value"] >= 1
    assert FRED_KEY not in caplog.text
    assert FRED_KEY not in orjson.dumps(status).decode()


async def test_fred_without_key_is_down_with_an_actionable_reason(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    async with FakeHttp() as fake:
        sup = FeedSupervisor(feeds_config({"fred": fred_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.statuses()["fred"]["state"] == "down", what="down")
        assert fake.requests == []
    status = (await store.feed_statuses())["fred"]
    assert "FRED_API_KEY" in status["detail"]


async def test_fred_rejected_key_error_does_not_leak_the_key(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FRED_API_KEY", "wrong-" + FRED_KEY)
    async with FakeHttp() as fake:
        fake.route("/fred/series/observations", fred_handler(fred_bodies()))
        sup = FeedSupervisor(feeds_config({"fred": fred_source(fake.url)}), store)
        async with running(sup):
            await wait_until(lambda: sup.statuses()["fred"]["state"] == "down", what="down")
    status = (await store.feed_statuses())["fred"]
    assert "HTTP 400" in status["detail"]
    assert FRED_KEY not in status["detail"] and FRED_KEY not in caplog.text


# ---- Treasury --------------------------------------------------------------------------------


async def test_treasury_par_yields_with_conditional_requests(store: Store) -> None:
    props = shared_path("fixtures", "treasury", "yield_curve_raw_properties.xml").read_text()
    body = treasury_atom([props])
    async with FakeHttp() as fake:
        fake.route("/xml", static_body(body, "application/atom+xml", etag='"v1"'))
        src = {
            "kind": "treasury",
            "interval": 0.05,
            "max_past": 0,
            "url": fake.url + "/xml?data=daily_treasury_yield_curve"
            "&field_tdr_date_value_month={yyyymm}",
        }
        sup = FeedSupervisor(feeds_config({"treasury": src}), store)
        async with running(sup):
            await wait_until(lambda: len(fake.requests) >= 5, what="polls")
    ticks = await redis_ticks(store)
    close = ny(2022, 2, 1, 16)
    assert sorted((t.symbol, t.value, t.ts) for t in ticks) == [
        ("US10Y", 1.81, close),
        ("US2Y", 1.18, close),
        ("US30Y", 2.12, close),
    ]
    now = datetime.now(NY)
    assert fake.requests[-1].query["field_tdr_date_value_month"] == f"{now:%Y%m}"
    assert fake.requests[-1].headers.get("If-None-Match") == '"v1"'


async def test_treasury_malformed_xml_is_dropped_and_feed_recovers(store: Store) -> None:
    props = shared_path("fixtures", "treasury", "yield_curve_raw_properties.xml").read_text()
    good = treasury_atom([props])
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        body = good[: len(good) // 2] if calls["n"] == 1 else good
        return web.Response(body=body, content_type="application/atom+xml")

    watched = WatchedStore(store)
    async with FakeHttp() as fake:
        fake.route("/xml", handler)
        src = {
            "kind": "treasury",
            "interval": 0.05,
            "max_past": 0,
            "url": fake.url + "/xml?m={yyyymm}",
        }
        sup = FeedSupervisor(feeds_config({"treasury": src}), watched)
        async with running(sup):
            await wait_until(lambda: sup.writer.written == 3, what="3 yields")
    assert watched.states["treasury"][-1] == "ok" and "down" in watched.states["treasury"]
    assert (await store.feed_statuses())["treasury"]["dropped"] == {"malformed": 1}


# ---- publication schedule --------------------------------------------------------------------


def nyfed_feed(now: float, interval: float = 900.0) -> Any:
    from connectors.base import FeedContext
    from connectors.config import FeedsConfig, NyFedFeedConfig
    from connectors.feeds.nyfed import NyFedFeed

    cfg = NyFedFeedConfig(kind="nyfed", interval=interval)
    return NyFedFeed(
        "nyfed", cfg, FeedContext(feeds=FeedsConfig(), sink=lambda *a: None, clock=lambda: now)
    )


def test_polls_every_interval_while_a_value_is_due() -> None:
    from datetime import date

    now = ny(2024, 6, 7, 9)  # Friday 09:00: Thursday's SOFR was published at 08:00
    feed = nyfed_feed(now)
    feed.stamp("SOFR", date(2024, 6, 5), "next_morning")  # only Wednesday's so far
    assert feed.next_poll_delay(now) == 900.0


def test_waits_for_the_next_publication_once_up_to_date() -> None:
    from datetime import date

    now = ny(2024, 6, 10, 7) + 30 * 60  # Monday 07:30; Friday's SOFR comes at 08:00
    feed = nyfed_feed(now, interval=60.0)
    feed.stamp("SOFR", date(2024, 6, 6), "next_morning")
    assert feed.next_poll_delay(now) == pytest.approx(30 * 60 + 60)  # 08:00 plus a minute


def test_idle_wait_is_capped() -> None:
    from datetime import date

    now = ny(2024, 6, 7, 9)  # Friday; the next SOFR (Friday's) is only due Monday 08:00
    feed = nyfed_feed(now, interval=60.0)
    feed.stamp("SOFR", date(2024, 6, 6), "next_morning")
    assert feed.next_poll_delay(now) == 6 * 3600.0
