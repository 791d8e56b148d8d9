"""When a published value became known: publication rules and the timestamps they give.

A daily source (a Treasury yield, SOFR, a FRED series) publishes the value of an observation
date D at some later instant; a replay or a live feed must stamp the value with that instant,
not with D and not with when it was fetched, or rules would see the future. Two rules cover
every source:

* :class:`OnObservationDate` -- known at a local time on D itself (a yield at the 16:00 New
  York close, an administered rate at 00:00 on its effective date). The time may change from
  a date on (the Tokyo close moved to 15:30 on 2024-11-05).
* :class:`OnNextPublication` -- known at a local time on the next date the series publishes
  (SOFR for D appears at 08:00 New York on the next business day).
* :class:`OnWeeklyRelease` -- known when the weekly release after D's week comes out: the
  Federal Reserve's H.10 (foreign exchange rates, the noon buying rates of each weekday) is
  released on Mondays at 16:15 New York with the week before (a 2026-08-21 rate was available
  2026-08-24T20:15Z, a Monday; the Board's H.10 page says "released weekly on Mondays"), or
  on the Tuesday when the Monday is a US federal holiday (:func:`us_federal_holiday`). Stamped
  at noon of their date, as FRED's DEX* series used to be, they would be up to ten days early.

For :class:`OnNextPublication` the history download knows the actual next publication date
(the next row with a value); a live feed does not and takes the next business day
(:func:`next_business_day`; US holidays are not modelled). Both go through :func:`known_at`.

The config file names the rules of the live feeds with :data:`StampName` (``stamp`` /
``stamps`` settings): ``close``, ``next_morning``, ``effective`` (:data:`STAMP_RULES`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True, slots=True)
class OnObservationDate:
    """Known at local time `at` (in `zone`) on the observation date itself."""

    zone: ZoneInfo
    at: time
    changes: tuple[tuple[date, time], ...] = ()  # (from this date, the new time), ascending

    def local_time(self, d: date) -> time:
        t = self.at
        for since, later in self.changes:
            if d >= since:
                t = later
        return t


@dataclass(frozen=True, slots=True)
class OnNextPublication:
    """Known at local time `at` (in `zone`) on the next date the series itself publishes."""

    zone: ZoneInfo
    at: time


@dataclass(frozen=True, slots=True)
class OnWeeklyRelease:
    """Known at local time `at` on the first `weekday` (0 = Monday) after the week of D, or the
    next business day when that day is a US federal holiday."""

    zone: ZoneInfo
    at: time
    weekday: int = 0

    def release_date(self, d: date) -> date:
        monday = d - timedelta(days=d.weekday())
        day = monday + timedelta(days=7 + self.weekday)
        while day.weekday() >= 5 or us_federal_holiday(day):
            day += timedelta(days=1)
        return day


PublicationRule = OnObservationDate | OnNextPublication | OnWeeklyRelease

#: The config file's names of the rules of the live feeds (all New York):
#: "close" 16:00 on the observation date (Treasury/FRED yields),
#: "next_morning" 08:00 on the next business day (SOFR),
#: "effective" 00:00 on the effective date (IORB and other administered rates).
StampName = Literal["close", "next_morning", "effective"]

CLOSE_NEW_YORK = OnObservationDate(NEW_YORK, time(16, 0))
EFFECTIVE_NEW_YORK = OnObservationDate(NEW_YORK, time(0, 0))
NEXT_MORNING_NEW_YORK = OnNextPublication(NEW_YORK, time(8, 0))
#: The Federal Reserve's H.10: Mondays 16:15 New York, for the weekdays of the week before.
H10_WEEKLY = OnWeeklyRelease(NEW_YORK, time(16, 15))

STAMP_RULES: dict[StampName, PublicationRule] = {
    "close": CLOSE_NEW_YORK,
    "next_morning": NEXT_MORNING_NEW_YORK,
    "effective": EFFECTIVE_NEW_YORK,
}


def rule_of(stamp: StampName | PublicationRule) -> PublicationRule:
    """The rule itself, or the rule a config name stands for."""
    return STAMP_RULES[stamp] if isinstance(stamp, str) else stamp


def default_stamp(canonical: str) -> StampName:
    """The rule of a live feed's symbol when its config names none."""
    if canonical == "SOFR":
        return "next_morning"
    if canonical == "IORB":
        return "effective"
    return "close"


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based; -1 = last) `weekday` of the month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def us_federal_holiday(d: date) -> bool:
    """US federal holidays (5 U.S.C. 6103) as observed: a Saturday holiday on the Friday, a
    Sunday holiday on the Monday. Juneteenth from 2021."""
    y = d.year
    floating = {
        _nth_weekday(y, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(y, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(y, 5, 0, -1),  # Memorial Day
        _nth_weekday(y, 9, 0, 1),  # Labor Day
        _nth_weekday(y, 10, 0, 2),  # Columbus Day
        _nth_weekday(y, 11, 3, 4),  # Thanksgiving
    }
    if d in floating:
        return True
    fixed = [(1, 1), (7, 4), (11, 11), (12, 25)] + ([(6, 19)] if y >= 2021 else [])
    for yy in (y - 1, y, y + 1):  # 1 January of y+1 may be observed on 31 December of y
        for m, dd in fixed:
            if (m, dd) == (6, 19) and yy < 2021:
                continue
            h = date(yy, m, dd)
            observed = h - timedelta(days=1) if h.weekday() == 5 else h
            observed = h + timedelta(days=1) if h.weekday() == 6 else observed
            if observed == d:
                return True
    return False


def next_business_day(d: date) -> date:
    """The next weekday after `d` (US holidays are not modelled: a value is then stamped a
    business day early, which only matters for a day)."""
    d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def known_at(
    d: date, stamp: StampName | PublicationRule, next_publication: date | None = None
) -> float:
    """When the value of observation date `d` became known (epoch seconds).

    `next_publication`: the date the series publishes next after `d`, when known (history);
    otherwise (live) :class:`OnNextPublication` takes the next business day.
    """
    rule = rule_of(stamp)
    if isinstance(rule, OnObservationDate):
        return datetime.combine(d, rule.local_time(d), rule.zone).timestamp()
    if isinstance(rule, OnWeeklyRelease):
        return datetime.combine(rule.release_date(d), rule.at, rule.zone).timestamp()
    day = next_publication if next_publication is not None else next_business_day(d)
    return datetime.combine(day, rule.at, rule.zone).timestamp()


def known_at_each(
    rule: PublicationRule, dates: Sequence[date], published: Sequence[date]
) -> list[float]:
    """:func:`known_at` of every date in `dates`, given `published`: the ascending dates on
    which the series has a value (the next of them after a date is its next publication;
    after the newest, the next business day)."""
    if not isinstance(rule, OnNextPublication):
        return [known_at(d, rule) for d in dates]
    out: list[float] = []
    for d in dates:
        i = bisect.bisect_right(published, d)
        out.append(known_at(d, rule, published[i] if i < len(published) else None))
    return out


def latest_due(stamp: StampName | PublicationRule, now: float) -> date | None:
    """The newest business-day observation date whose publication time has passed."""
    rule = rule_of(stamp)
    today = datetime.fromtimestamp(now, rule.zone).date()
    for back in range(16):
        d = today - timedelta(days=back)
        if d.weekday() < 5 and known_at(d, rule) <= now:
            return d
    return None
