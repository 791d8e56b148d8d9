"""Trading sessions in local time with IANA zones, and per-session returns."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.core.models import Kind
from bot.engine.series import Series
from bot.engine.sessions import Session, SessionReturns

LONDON = Session("europe", ZoneInfo("Europe/London"), time(8), time(13))
TOKYO = Session("asia", ZoneInfo("Asia/Tokyo"), time(9), time(16))
SYDNEY = Session("sydney", ZoneInfo("Australia/Sydney"), time(8), time(17))


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def test_london_follows_british_summer_time() -> None:
    assert [utc(x) for x in LONDON.window(date(2020, 1, 15))] == ["08:00", "13:00"]
    assert [utc(x) for x in LONDON.window(date(2020, 7, 15))] == ["07:00", "12:00"]


def test_tokyo_never_moves() -> None:
    assert [utc(x) for x in TOKYO.window(date(2020, 1, 15))] == ["00:00", "07:00"]
    assert [utc(x) for x in TOKYO.window(date(2020, 7, 15))] == ["00:00", "07:00"]


def test_sydney_moves_the_other_way() -> None:
    # southern summer in January (AEDT, UTC+11), winter in July (AEST, UTC+10)
    assert utc(SYDNEY.window(date(2020, 1, 15))[0]) == "21:00"
    assert utc(SYDNEY.window(date(2020, 7, 15))[0]) == "22:00"


def test_session_returns_sum_only_the_session_hours() -> None:
    s = Series("USDX", Kind.PRICE)
    day = datetime(2020, 1, 15, tzinfo=UTC).timestamp()
    # dollar falls 1% during London's 08:00-13:00 and rises 1% afterwards, each day
    for d in range(3):
        base = day + d * 86400
        s.add(base + 7 * 3600, 100.0)
        s.add(base + 13 * 3600, 99.0)
        s.add(base + 20 * 3600, 100.0)
    sr = SessionReturns({"europe": LONDON})
    now = day + 2 * 86400 + 21 * 3600
    assert sr.sum(s, "europe", now, 3 * 86400) == pytest.approx(-3.0)
    # the cache gives the same answer on a second call in the same hour
    assert sr.sum(s, "europe", now + 60, 3 * 86400) == pytest.approx(-3.0)


def test_session_under_way_counts_up_to_now() -> None:
    s = Series("USDX", Kind.PRICE)
    day = datetime(2020, 1, 15, tzinfo=UTC).timestamp()
    s.add(day + 7 * 3600, 100.0)
    s.add(day + 10 * 3600, 98.0)
    sr = SessionReturns({"europe": LONDON})
    assert sr.sum(s, "europe", day + 10 * 3600, 86400) == pytest.approx(-2.0)
