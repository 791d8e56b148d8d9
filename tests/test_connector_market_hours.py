"""Market hours for the stall watchdog: FX and spot gold close at the weekend and on holidays."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from connectors.config import MarketHoursConfig
from connectors.market_hours import MarketHours

NY = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = NY) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


@pytest.fixture
def hours() -> MarketHours:
    return MarketHours(MarketHoursConfig())


def test_crypto_never_closes(hours: MarketHours) -> None:
    assert hours.is_open("always", at(2026, 7, 11, 12))  # a Saturday


@pytest.mark.parametrize(
    "ts, is_open",
    [
        (at(2026, 7, 10, 16, 59), True),  # Friday before 17:00 New York
        (at(2026, 7, 10, 17, 0), False),  # the FX week ends
        (at(2026, 7, 11, 12), False),  # Saturday
        (at(2026, 7, 12, 16, 59), False),  # Sunday before the open
        (at(2026, 7, 12, 17, 0), True),  # Sunday 17:00 New York: the week opens
        (at(2026, 7, 15, 3), True),  # midweek night
    ],
)
def test_fx_week_in_new_york_time(hours: MarketHours, ts: float, is_open: bool) -> None:
    assert hours.is_open("fx", ts) is is_open


def test_fx_close_follows_us_daylight_saving(hours: MarketHours) -> None:
    # Friday 17:00 New York is 21:00 UTC in summer and 22:00 UTC in winter
    assert not hours.is_open("fx", at(2026, 7, 10, 21, 30, UTC))
    assert hours.is_open("fx", at(2026, 1, 9, 21, 30, UTC))
    assert not hours.is_open("fx", at(2026, 1, 9, 22, 30, UTC))


def test_gold_halts_daily_an_hour_from_17_new_york(hours: MarketHours) -> None:
    assert not hours.is_open("metals", at(2026, 7, 14, 17, 30))
    assert hours.is_open("metals", at(2026, 7, 14, 18, 0))
    assert hours.is_open("fx", at(2026, 7, 14, 17, 30))  # FX trades through


def test_christmas_and_new_year_are_closed(hours: MarketHours) -> None:
    assert not hours.is_open("fx", at(2025, 12, 25, 10))  # a Thursday
    assert not hours.is_open("fx", at(2025, 12, 24, 18))  # the evening session of the 25th
    assert hours.is_open("fx", at(2025, 12, 26, 10))
    assert not hours.is_open("fx", at(2026, 1, 1, 10))


def test_configured_one_off_holiday() -> None:
    h = MarketHours(MarketHoursConfig(holidays=["2026-07-03"]))
    assert not h.is_open("fx", at(2026, 7, 3, 10))
    assert h.is_open("fx", at(2026, 12, 25, 10))  # the defaults were replaced


def test_open_since_finds_the_sunday_open(hours: MarketHours) -> None:
    assert hours.open_since("fx", at(2026, 7, 13, 9)) == at(2026, 7, 12, 17)
    assert hours.open_since("fx", at(2026, 7, 11, 9)) is None
    assert hours.open_since("metals", at(2026, 7, 14, 20)) == at(2026, 7, 14, 18)
