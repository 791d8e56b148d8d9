"""Each keyless history source against a local server in its documented format: parsing (on the
recorded answers in ../shared/fixtures where there are some), when each value is stamped, and
the failure modes (403 with HTML, 451, 429 with Retry-After, a 200 HTML interstitial, bodies
cut short, DNS failures, schema changes), each reported with the source and what to do."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from bot.core.models import iso_utc
from connectors.history import nyfed, treasury
from connectors.history.common import DOWNLOAD_RETRY
from connectors.history.download import DownloadOptions, DownloadResult, download
from connectors.history.fred_api import parse_observations
from connectors.publication import H10_WEEKLY, known_at, us_federal_holiday
from tests.conftest import shared_path
from tests.fake_history_servers import INTERSTITIAL, FakeServer
from tests.fake_history_sources import (
    Episode,
    FakeDukascopy,
    FakeEcb,
    FakeFrb,
    FakeNyFed,
    FakeTreasury,
    FakeYahoo,
)

FAST = replace(DOWNLOAD_RETRY, attempts=3, initial=0.02, max=0.05)
NY = ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)


def episode(tmp_path: Path, *rows: str) -> Episode:
    path = tmp_path / "rows.csv"
    path.write_text("ts,symbol,value\n" + "\n".join(rows) + "\n")
    return Episode(path)


@contextlib.asynccontextmanager
async def up(*servers: FakeServer) -> AsyncIterator[None]:
    started: list[FakeServer] = []
    try:
        for s in servers:
            await s.start()
            started.append(s)
        yield
    finally:
        for s in started:
            await s.stop()


async def fetch(
    tmp_path: Path,
    symbols: list[str],
    start: date,
    end: date,
    urls: dict[str, str],
    **kw: Any,
) -> DownloadResult:
    opts = DownloadOptions(
        start=start,
        end=end,
        symbols=symbols,
        cache_dir=tmp_path / "cache",
        source_urls=urls,
        min_interval=0.0,
        timeout=5.0,
        retry=FAST,
        **kw,
    )
    return await download(opts)


def rows(result: DownloadResult, symbol: str) -> list[tuple[str, float]]:
    (res,) = [r for r in result.results if r.symbol == symbol]
    return [(iso_utc(r.ts), r.value) for r in res.rows]


def report(result: DownloadResult, source: str) -> str:
    (rep,) = [r for r in result.reports if r.source == source]
    return rep.error or rep.outcome


# --------------------------------------------------------------------------- parsers on recordings


def test_treasury_csv_of_the_shared_recording_parses_by_column_name() -> None:
    body = shared_path("fixtures", "treasury", "daily-treasury-par-yield-curve-2025-01-02.csv")
    parsed = treasury.parse_par_yield_csv(body.read_bytes())
    assert parsed[0][0] == date(2025, 1, 2) and parsed[-1][0] == date(2025, 2, 28)
    day = dict(parsed)[date(2025, 2, 28)]
    assert (day["2 Yr"], day["10 Yr"], day["30 Yr"]) == ("3.99", "4.24", "4.51")


def test_treasury_xml_entry_of_the_shared_recording_parses() -> None:
    props = shared_path("fixtures", "treasury", "yield_curve_raw_properties.xml").read_text()
    feed = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
        'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"><entry>'
        f'<content type="application/xml">{props}</content></entry></feed>'
    )
    assert treasury.parse_par_yields(feed.encode()) == [
        (date(2022, 2, 1), {"2 Yr": "1.18", "10 Yr": "1.81", "30 Yr": "2.12"})
    ]


def test_nyfed_answer_of_the_shared_recording_parses() -> None:
    body = shared_path("fixtures", "nyfed", "sofr_search_2024-06-01_2024-06-06.json")
    assert nyfed.parse_ref_rates(body.read_bytes(), "SOFR", "t") == [
        (date(2024, 6, 3), 5.35),
        (date(2024, 6, 4), 5.33),
        (date(2024, 6, 5), 5.33),
        (date(2024, 6, 6), 5.33),
    ]


def test_fred_api_answer_of_the_shared_recording_parses() -> None:
    body = shared_path("fixtures", "fred", "series_observations_SOFR_2024-06-01_2024-06-06.json")
    obs = parse_observations(body.read_bytes(), "SOFR")
    assert obs[0] == (date(2024, 6, 3), "5.35") and len(obs) == 4


# --------------------------------------------------------------------------- stamps


async def test_daily_sources_stamp_each_value_when_it_was_known(tmp_path: Path) -> None:
    ep = episode(
        tmp_path,
        "2020-03-06T21:00:00Z,US10Y,0.74",  # Friday 16:00 EST
        "2020-03-09T20:00:00Z,US10Y,0.54",  # Monday 16:00 EDT
        "2020-03-09T12:00:00Z,SOFR,1.53",  # SOFR of Fri 03-06, published Mon 08:00 EDT
        "2020-03-10T12:00:00Z,SOFR,1.10",
        "2020-03-05T05:00:00Z,IORB,1.1",
        "2020-03-06T12:00:00Z,EUR/USD,1.12",
        "2020-03-06T12:00:00Z,USD/JPY,106.0",
        "2020-03-06T20:00:00Z,N225,19000",
    )
    t, n, f, e, y = FakeTreasury(ep), FakeNyFed(ep), FakeFrb(ep), FakeEcb(ep), FakeYahoo(ep)
    async with up(t, n, f, e, y):
        urls = {
            "treasury": t.url,
            "nyfed": n.url,
            "frb": f.endpoint,
            "frb_h10": f.endpoint,
            "ecb": e.url + "/service/data/EXR",
            "yahoo": y.url,
        }
        got = await fetch(
            tmp_path,
            ["US10Y", "SOFR", "IORB", "EUR/USD", "USD/JPY", "N225"],
            date(2020, 3, 5),
            date(2020, 3, 12),
            urls,
            sources={"EUR/USD": ["frb_h10"], "USD/JPY": ["ecb"]},
        )
    assert rows(got, "US10Y") == [("2020-03-06T21:00:00Z", 0.74), ("2020-03-09T20:00:00Z", 0.54)]
    assert rows(got, "SOFR")[0] == ("2020-03-09T12:00:00Z", 1.53)  # 08:00 on the next publication
    assert rows(got, "IORB") == [("2020-03-05T05:00:00Z", 1.1)]  # 00:00 EST on its date
    # H.10: the rate of Friday 03-06 appears with its week on Monday 03-09 at 16:15 EDT
    assert rows(got, "EUR/USD") == [("2020-03-09T20:15:00Z", 1.12)]
    # ECB: 16:00 Frankfurt on the day (15:00Z in winter), a cross through the euro
    ts, jpy = rows(got, "USD/JPY")[0]
    assert ts == "2020-03-06T15:00:00Z" and jpy == pytest.approx(106.0, rel=1e-6)
    assert rows(got, "N225") == [("2020-03-06T06:00:00Z", 19000.0)]  # 15:00 Tokyo


def test_h10_is_released_on_the_monday_after_its_week_or_the_tuesday_after_a_holiday() -> None:
    def released(d: date) -> str:
        return iso_utc(known_at(d, H10_WEEKLY))

    assert released(date(2020, 3, 2)) == "2020-03-09T20:15:00Z"  # Mon -> next Mon 16:15 EDT
    assert released(date(2020, 3, 6)) == "2020-03-09T20:15:00Z"
    assert released(date(2020, 2, 14)) == "2020-02-18T21:15:00Z"  # Presidents' Day Monday
    assert released(date(2020, 5, 22)) == "2020-05-26T20:15:00Z"  # Memorial Day
    assert us_federal_holiday(date(2021, 7, 5))  # 4 July 2021 was a Sunday: observed Monday
    assert us_federal_holiday(date(2022, 6, 20)) and not us_federal_holiday(date(2020, 6, 19))
    assert not us_federal_holiday(date(2020, 3, 9))


async def test_dukascopy_hours_are_closes_at_the_bar_end_and_breaks_are_dropped(
    tmp_path: Path,
) -> None:
    ep = episode(
        tmp_path,
        "2020-03-06T21:00:00Z,EUR/USD,1.12850",  # Friday's last hour (20:00-21:00)
        "2020-03-08T22:00:00Z,EUR/USD,1.14500",  # Sunday's first hour; the weekend is flat
        "2020-03-08T23:00:00Z,EUR/USD,1.14470",
    )
    duka = FakeDukascopy(ep)
    async with up(duka):
        got = await fetch(
            tmp_path, ["EUR/USD"], date(2020, 3, 6), date(2020, 3, 8), {"dukascopy": duka.url}
        )
    assert rows(got, "EUR/USD") == [
        ("2020-03-06T21:00:00Z", 1.1285),
        ("2020-03-08T22:00:00Z", 1.145),
        ("2020-03-08T23:00:00Z", 1.1447),
    ]
    assert [r.path for r in duka.requests] == ["/EURUSD/2020/02/BID_candles_hour_1.bi5"]


async def test_dukascopy_current_month_comes_from_the_day_files(tmp_path: Path) -> None:
    ep = episode(
        tmp_path, "2020-03-02T10:00:00Z,XAU/USD,1600.5", "2020-03-03T10:00:00Z,XAU/USD,1610"
    )
    duka = FakeDukascopy(ep)
    now = datetime(2020, 3, 4, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    async with up(duka):
        got = await fetch(
            tmp_path,
            ["XAU/USD"],
            date(2020, 3, 2),
            date(2020, 3, 4),
            {"dukascopy": duka.url},
            clock=now,
        )
    assert rows(got, "XAU/USD") == [
        ("2020-03-02T10:00:00Z", 1600.5),
        ("2020-03-03T10:00:00Z", 1610.0),
    ]
    paths = [r.path for r in duka.requests]
    assert "/XAUUSD/2020/02/02/BID_candles_min_1.bi5" in paths
    assert not any(p.endswith("/04/BID_candles_min_1.bi5") for p in paths)  # today: not over


# --------------------------------------------------------------------------- failure modes


async def test_429_with_retry_after_is_waited_for_then_served(tmp_path: Path) -> None:
    ep = episode(tmp_path, "2020-03-09T20:00:00Z,SPX,2746.56")
    yahoo = FakeYahoo(ep)
    yahoo.fail_next(429, {"Retry-After": "1"}, body="Too Many Requests")
    async with up(yahoo):
        got = await fetch(
            tmp_path, ["SPX"], date(2020, 3, 9), date(2020, 3, 9), {"yahoo": yahoo.url}
        )
    assert rows(got, "SPX") == [("2020-03-09T20:00:00Z", 2746.56)]
    assert yahoo.requests[1].at - yahoo.requests[0].at >= 0.9


async def test_yahoo_unavailable_is_a_reported_state_and_the_next_source_serves(
    tmp_path: Path,
) -> None:
    ep = episode(tmp_path, "2020-03-09T20:00:00Z,SPX,2746.56", "2020-03-09T20:00:00Z,VIX,54.46")
    yahoo, duka = FakeYahoo(ep), FakeDukascopy(ep)
    yahoo.always = INTERSTITIAL  # a 200 with a challenge page instead of JSON
    async with up(yahoo, duka):
        got = await fetch(
            tmp_path,
            ["SPX", "VIX"],
            date(2020, 3, 9),
            date(2020, 3, 9),
            {"yahoo": yahoo.url, "dukascopy": duka.url},
        )
    assert "HTML page instead of json" in report(got, "yahoo")
    assert rows(got, "SPX") == [("2020-03-09T20:00:00Z", 2746.56)]  # Dukascopy's CFD
    assert got.missing == ["VIX"]  # Yahoo only: no value, never a crash
    (vix,) = [r for r in got.results if r.symbol == "VIX"]
    assert any("yahoo" in n and "HTML" in n for n in vix.notes)


async def test_a_retry_after_longer_than_the_limit_gives_up_at_once(tmp_path: Path) -> None:
    yahoo = FakeYahoo(episode(tmp_path, "2020-03-09T20:00:00Z,SPX,2746.56"))
    yahoo.fail_next(429, {"Retry-After": "3600"}, body="Too Many Requests")
    async with up(yahoo):
        got = await fetch(
            tmp_path,
            ["SPX"],
            date(2020, 3, 9),
            date(2020, 3, 9),
            {"yahoo": yahoo.url},
            sources={"SPX": ["yahoo"]},
        )
    assert "3600" in report(got, "yahoo") and len(yahoo.requests) == 1


async def test_a_body_cut_short_is_retried_and_a_short_file_is_a_format_error(
    tmp_path: Path,
) -> None:
    ep = episode(tmp_path, "2020-03-09T20:00:00Z,US10Y,0.54", "2020-03-09T10:00:00Z,EUR/USD,1.14")
    t, duka = FakeTreasury(ep), FakeDukascopy(ep)
    t.fail_next(200, cut="truncate")  # the connection closes half way: retried
    duka.always = replace(INTERSTITIAL, cut="short")  # half a bi5: LZMA cannot finish
    async with up(t, duka):
        got = await fetch(
            tmp_path,
            ["US10Y", "EUR/USD"],
            date(2020, 3, 9),
            date(2020, 3, 9),
            {"treasury": t.url, "dukascopy": duka.url},
            sources={"EUR/USD": ["dukascopy"]},
        )
    assert rows(got, "US10Y") == [("2020-03-09T20:00:00Z", 0.54)]
    assert len(t.requests) == 2
    assert "not a complete LZMA file" in report(got, "dukascopy")
    assert not list((tmp_path / "cache").rglob("*.bi5"))  # never cached


async def test_a_schema_change_is_reported_with_what_changed(tmp_path: Path) -> None:
    srv = FakeServer()

    async def changed(request: web.Request) -> web.Response:
        return web.Response(text="Date,Two Year,Ten Year\n03/09/2020,0.5,0.54\n")

    srv.app.router.add_get("/{year}/all", changed)
    async with up(srv):
        got = await fetch(
            tmp_path, ["US10Y"], date(2020, 3, 9), date(2020, 3, 9), {"treasury": srv.url}
        )
    assert "did the Treasury change its CSV?" in report(got, "treasury")
    assert got.missing == ["US10Y"]


async def test_an_unresolvable_host_fails_its_sources_at_once(tmp_path: Path) -> None:
    ep = episode(tmp_path, "2020-03-09T20:00:00Z,US10Y,0.54")
    t = FakeTreasury(ep)
    async with up(t):
        got = await fetch(
            tmp_path,
            ["US10Y", "SOFR"],
            date(2020, 3, 9),
            date(2020, 3, 9),
            {"treasury": t.url, "nyfed": "http://no-such-host.invalid"},
        )
    assert rows(got, "US10Y") == [("2020-03-09T20:00:00Z", 0.54)]
    assert "cannot resolve no-such-host.invalid" in report(got, "nyfed")
    assert not got.offline  # one host answered


async def test_the_fred_api_is_the_last_resort_with_a_key_which_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRED_API_KEY", "sekret-key-123")
    srv = FakeServer()
    seen: list[str] = []

    async def observations(request: web.Request) -> web.Response:
        seen.append(request.query["api_key"])
        body = {
            "error_code": 400,
            "error_message": "Bad Request.  The value for variable "
            f"api_key is not registered: {request.query['api_key']}",
        }
        return web.json_response(body, status=400)

    srv.app.router.add_get("/fred/series/observations", observations)
    async with up(srv):
        got = await fetch(
            tmp_path,
            ["US10Y"],
            date(2020, 3, 9),
            date(2020, 3, 9),
            {"treasury": "http://127.0.0.1:9", "fred": srv.url + "/fred/series/observations"},
        )
    assert seen == ["sekret-key-123"]  # asked, after the Treasury (unreachable)
    text = " ".join(r.error or "" for r in got.reports) + " ".join(
        n for r in got.results for n in r.notes
    )
    assert "HTTP 400" in text and "sekret-key-123" not in text and "***" in text
