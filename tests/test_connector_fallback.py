"""Fallbacks: a source refused from this location (451/403) or down hands its symbols to the
next configured source at once, says so, and is not retried hot.

Local servers speak each source's protocol: ccxt's Binance REST (the 451 body Binance sends
from restricted locations, as quoted in ccxt issue #16044), a Kraken v1 websocket fed with
the recorded ticker frames (and one that refuses the handshake with 451), FRED's
fredgraph.csv answering 403 with an HTML page, and the Fed Board's DDP CSV.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiohttp import web

from bot.cli.feeds import format_symbols, symbol_rows
from bot.store.redis_store import Store
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeHttp,
    FakeKraken,
    Recording,
    Script,
    feeds_config,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    redis_ticks,
    running,
    static_body,
    wait_until,
)

NY = ZoneInfo("America/New_York")

#: Binance's answer from a restricted location (ccxt issue #16044, dali-rp2 PR #237).
BINANCE_451 = {
    "code": 0,
    "msg": "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error.",
}

#: A Fed Board DDP package (PRATES, label=include, layout=seriescolumn), the documented shape.
DDP_CSV = (
    '"Series Description","Interest rate on excess reserves (IOER rate)",'
    '"Interest rate on required reserves (IORR rate)",'
    '"Interest rate on reserve balances (IORB rate)"\r\n'
    '"Unit:","Percent:_Per_Year","Percent:_Per_Year","Percent:_Per_Year"\r\n'
    '"Multiplier:","1","1","1"\r\n'
    '"Currency:","NA","NA","NA"\r\n'
    '"Unique Identifier: ","PRATES/PRATES_POLICY_RATES/RESBME_N.D",'
    '"PRATES/PRATES_POLICY_RATES/RESBMS_N.D","PRATES/PRATES_POLICY_RATES/RESBM_N.D"\r\n'
    '"Time Period","RESBME_N.D","RESBMS_N.D","RESBM_N.D"\r\n'
    "2024-06-04,,,5.40\r\n"
    "2024-06-05,,,5.40\r\n"
    "2024-06-06,,,5.40\r\n"
    "2024-06-07,,,5.40\r\n"
    "2024-06-10,,,\r\n"
)
DDP_PATH = "/datadownload/Output.aspx"

FRED_403_HTML = (
    "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
    "<p>You don't have permission to access this resource.</p></body></html>"
)


@pytest.fixture
def ticker_rec() -> Recording:
    return read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))


def kraken_frames(rec: Recording, price: float) -> Any:
    template = kraken_ticker_template(rec)
    return lambda pair, cid, i: kraken_ticker_frame(template, cid, pair, price + (i % 3))


def kraken(url: str) -> dict[str, Any]:
    return {"kind": "kraken", "url": url, "symbols": {"XBT/USD": "BTC/USD"}}


def binance(url: str) -> dict[str, Any]:
    return {
        "kind": "ccxt",
        "exchange": "binance",
        "symbols": {"BTC/USDT": "BTC/USD"},
        "urls": {"api": {"public": f"{url}/api/v3"}},
        "options": {"fetchMarkets": {"types": ["spot"]}},
    }


def ddp(url: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "board_ddp", "url": url + DDP_PATH, "interval": 0.05, **kw}


def ny(y: int, m: int, d: int, h: int) -> float:
    return datetime(y, m, d, h, tzinfo=NY).timestamp()


async def test_binance_451_is_unavailable_here_and_the_next_source_serves_btc(
    store: Store, ticker_rec: Recording
) -> None:
    async with (
        FakeHttp() as rest,
        FakeKraken(
            ticker_rec, kraken_frames(ticker_rec, 60_000.0), Script(Behaviour(loop=True))
        ) as kr,
    ):
        rest.fail(
            451, times=100, body=orjson.dumps(BINANCE_451).decode(), content_type="application/json"
        )
        cfg = feeds_config(
            {"binance": binance(rest.url), "kraken": kraken(kr.url)},
            combine={
                "BTC/USD": {"mode": "failover", "sources": ["binance", "kraken"], "max_age": 30}
            },
            stale_after=30,  # importing ccxt and loading markets take longer than the 0.4 s
        )
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(
                lambda: sup.statuses()["binance"]["unavailable"] is True, what="binance refused"
            )
            await wait_until(lambda: sup.writer.written >= 5, what="kraken ticks", within=15)
            await asyncio.sleep(1.0)  # the normal backoff (0.05 s .. 0.2 s) would retry ~5x
            serving = sup.serving_by_symbol()
        assert len(rest.requests) == 1  # not retried hot: the next try is an hour away
    assert serving == {"BTC/USD": ["kraken"]}
    statuses = await store.feed_statuses()
    b = statuses["binance"]
    assert b["state"] == "down" and b["unavailable"] is True
    assert "unavailable from this location (HTTP 451 from binance)" in b["detail"]
    assert "restricted location" in b["detail"] and "[feeds.combine]" in b["detail"]
    assert "trying again in 60 min" in b["detail"]  # feeds.unavailable_retry: 1 h by default
    assert statuses["kraken"]["serving"] == ["BTC/USD"]
    ticks = await redis_ticks(store, "BTC/USD")
    assert ticks and {t.source for t in ticks} == {"kraken"}
    # `stressbot feeds` says who serves each symbol
    from bot.runtime.config import Config

    config = Config.model_validate({"feeds": cfg.model_dump()})
    rows = symbol_rows(config, statuses)
    btc = next(r for r in rows if r["symbol"] == "BTC/USD")
    assert btc["serving"] == ["kraken"] and btc["unavailable"] == ["binance"]
    table = format_symbols(rows)
    line = next(x for x in table.splitlines() if x.startswith("BTC/USD"))
    assert "kraken" in line and "binance (unavailable here)" in line


async def test_failover_skips_a_down_primary_at_once_not_after_max_age(
    store: Store, ticker_rec: Recording
) -> None:
    primary_script = Script(Behaviour(close_after=10, interval=0.01), Behaviour(silent_after=0))
    async with (
        FakeKraken(ticker_rec, kraken_frames(ticker_rec, 100.0), primary_script) as p,
        FakeKraken(
            ticker_rec,
            kraken_frames(ticker_rec, 200.0),
            Script(Behaviour(loop=True, interval=0.01)),
        ) as b,
    ):
        cfg = feeds_config(
            {"primary": kraken(p.url), "backup": kraken(b.url)},
            # max_age far longer than the test: only the primary's health can hand over
            combine={
                "BTC/USD": {"mode": "failover", "sources": ["primary", "backup"], "max_age": 600}
            },
        )
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(
                lambda: primary_script.connections >= 2, what="primary dropped", within=15
            )
            await wait_until(
                lambda: sup.serving_by_symbol()["BTC/USD"] == ["backup"], what="backup serving"
            )
            t0 = time.monotonic()
            await wait_until(lambda: sup.writer.written >= 20, what="backup ticks", within=15)
            assert time.monotonic() - t0 < 10  # far below max_age (600 s)
    ticks = await redis_ticks(store, "BTC/USD")
    sources = [t.source for t in ticks]
    assert sources[0] == "primary" and sources[-1] == "backup"
    assert set(sources[sources.index("backup") :]) == {"backup"}


async def test_kraken_handshake_refused_with_451_is_unavailable_not_retried_hot(
    store: Store, ticker_rec: Recording
) -> None:
    async with FakeKraken(ticker_rec, kraken_frames(ticker_rec, 1.0)) as kr:
        kr.server.reject = (451, "Unavailable For Legal Reasons")
        sup = FeedSupervisor(feeds_config({"kraken": kraken(kr.url)}), store)
        async with running(sup):
            await wait_until(
                lambda: sup.statuses()["kraken"]["unavailable"], what="unavailable", within=15
            )
            await asyncio.sleep(0.8)
        assert kr.server.rejected == 1
    st = (await store.feed_statuses())["kraken"]
    assert st["state"] == "down" and "unavailable from this location (HTTP 451" in st["detail"]


async def test_fred_csv_403_html_is_unavailable_and_the_fed_board_serves_iorb(
    store: Store,
) -> None:
    async with FakeHttp() as fred, FakeHttp() as board:
        fred.fail(403, times=100, body=FRED_403_HTML, content_type="text/html")
        board.route(DDP_PATH, static_body(DDP_CSV.encode(), "text/csv"))
        cfg = feeds_config(
            {
                "fred_public": {
                    "kind": "fred_csv",
                    "url": fred.url + "/graph/fredgraph.csv",
                    "interval": 0.05,
                    "symbols": {"IORB": "IORB"},
                },
                "board": ddp(board.url, max_past=0),
            },
            combine={
                "IORB": {"mode": "failover", "sources": ["fred_public", "board"], "max_age": "5d"}
            },
        )
        sup = FeedSupervisor(cfg, store)
        async with running(sup):
            await wait_until(
                lambda: sup.statuses()["fred_public"]["unavailable"], what="403", within=15
            )
            await wait_until(lambda: len(board.requests) >= 3, what="three DDP polls", within=15)
            serving = sup.serving_by_symbol()
        assert len(fred.requests) == 1
    assert serving == {"IORB": ["board"]}
    st = (await store.feed_statuses())["fred_public"]
    assert "unavailable from this location (HTTP 403 from 127.0.0.1" in st["detail"]
    assert "Forbidden" in st["detail"] and "<" not in st["detail"]  # HTML squashed to text
    ticks = await redis_ticks(store, "IORB")
    assert [t.value for t in ticks] == [5.40, 5.40, 5.40, 5.40]  # once each
    assert [t.ts for t in ticks] == [ny(2024, 6, d, 0) for d in (4, 5, 6, 7)]  # effective date
    assert {t.source for t in ticks} == {"board"}
    req = board.requests[0]
    assert req.query["rel"] == "PRATES" and req.query["filetype"] == "csv"
    assert req.query["series"] == "c27939ee810cb2e929a920a6bd77d9f6"
    assert req.query["label"] == "include" and req.query["layout"] == "seriescolumn"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b"<html><head><title>Just a moment...</title></head><body>checking</body></html>",
            "HTML page instead of the CSV",
        ),
        (DDP_CSV.encode()[:400], "no 'Time Period' header"),  # cut inside the label rows
        (DDP_CSV.encode()[:-14], "expected YYYY-MM-DD"),  # cut inside a date
    ],
    ids=["html-interstitial", "truncated-labels", "truncated-row"],
)
async def test_ddp_answers_that_are_not_the_csv_are_format_errors_then_it_recovers(
    store: Store, body: bytes, why: str
) -> None:
    bodies = [body]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[0] if bodies else DDP_CSV.encode(), content_type="text/csv")

    async with FakeHttp() as board:
        board.route(DDP_PATH, handler)
        sup = FeedSupervisor(feeds_config({"board": ddp(board.url, max_past=0)}), store)
        async with running(sup):
            await wait_until(
                lambda: sup.statuses()["board"]["state"] == "down", what="down", within=15
            )
            detail = sup.statuses()["board"]["detail"]
            bodies.clear()
            await wait_until(
                lambda: sup.statuses()["board"]["state"] == "ok", what="recovered", within=15
            )
            await wait_until(lambda: sup.writer.written >= 4, what="IORB ticks", within=15)
    assert why in detail
    assert sup.feeds["board"].health.dropped["malformed"] >= 1
    assert len(await redis_ticks(store, "IORB")) == 4
