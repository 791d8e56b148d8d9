"""connectors.publication: one set of rules for when a published value became known."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import get_args
from zoneinfo import ZoneInfo

from connectors.publication import (
    CLOSE_NEW_YORK,
    NEXT_MORNING_NEW_YORK,
    STAMP_RULES,
    TOKYO,
    OnObservationDate,
    StampName,
    known_at,
    known_at_each,
    latest_due,
    next_business_day,
    rule_of,
)


def at(zone: str, y: int, m: int, d: int, hour: int, minute: int = 0) -> float:
    return datetime(y, m, d, hour, minute, tzinfo=ZoneInfo(zone)).timestamp()


def test_every_config_name_has_a_rule() -> None:
    assert set(STAMP_RULES) == set(get_args(StampName))
    assert rule_of("close") is CLOSE_NEW_YORK
    assert rule_of(NEXT_MORNING_NEW_YORK) is NEXT_MORNING_NEW_YORK


def test_a_config_name_and_its_rule_give_the_same_time() -> None:
    d = date(2024, 6, 7)  # a Friday
    for name, rule in STAMP_RULES.items():
        assert known_at(d, name) == known_at(d, rule)


def test_local_time_on_the_observation_date_may_change_from_a_date_on() -> None:
    n225 = OnObservationDate(TOKYO, time(15, 0), changes=((date(2024, 11, 5), time(15, 30)),))

    assert known_at(date(2024, 11, 1), n225) == at("Asia/Tokyo", 2024, 11, 1, 15, 0)
    assert known_at(date(2024, 11, 5), n225) == at("Asia/Tokyo", 2024, 11, 5, 15, 30)


def test_live_guesses_the_next_business_day_history_sees_the_next_publication() -> None:
    friday, tuesday = date(2020, 2, 14), date(2020, 2, 18)  # Monday 17th: Presidents' Day

    live = known_at(friday, NEXT_MORNING_NEW_YORK)
    history = known_at(friday, NEXT_MORNING_NEW_YORK, next_publication=tuesday)

    assert next_business_day(friday) == date(2020, 2, 17)
    assert live == at("America/New_York", 2020, 2, 17, 8)
    assert history == at("America/New_York", 2020, 2, 18, 8)


def test_known_at_each_takes_the_next_published_date_and_guesses_after_the_newest() -> None:
    dates = [date(2020, 2, 13), date(2020, 2, 14), date(2020, 2, 17), date(2020, 2, 18)]
    published = [date(2020, 2, 13), date(2020, 2, 14), date(2020, 2, 18)]  # no value on the 17th

    got = known_at_each(NEXT_MORNING_NEW_YORK, dates, published)

    assert got == [
        at("America/New_York", 2020, 2, 14, 8),
        at("America/New_York", 2020, 2, 18, 8),
        at("America/New_York", 2020, 2, 18, 8),
        at("America/New_York", 2020, 2, 19, 8),  # newest: the next business day
    ]
    assert known_at_each(CLOSE_NEW_YORK, dates, published) == [known_at(d, "close") for d in dates]


def test_latest_due_is_the_newest_weekday_already_published() -> None:
    saturday_noon = at("America/New_York", 2024, 6, 8, 12)
    monday_7 = at("America/New_York", 2024, 6, 10, 7)

    assert latest_due("close", saturday_noon) == date(2024, 6, 7)
    assert latest_due("next_morning", saturday_noon) == date(2024, 6, 6)  # Friday's: Monday
    assert latest_due("next_morning", monday_7) == date(2024, 6, 6)
