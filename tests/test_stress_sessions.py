"""The gauge's session split of the dollar (`dollar_sessions`, bot/engine/stress.py): the
sell-America signature (dollar sold in Asian and European hours, held in New York, yields up)
reads as stress; the opposite split, a dollar bought everywhere or falling yields do not; a
daily-only dollar leaves it unknown and its weight back with its donor; on the real files it
reads the signature at the `session_dollar` alert and is unknown on the daily 2000-2018 file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.models import AlertKind, iso_utc
from bot.engine.config import default_sessions
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.engine.sessions import sessions_from_config
from bot.engine.stress import SPLIT_TYPICAL, WEIGHTS, read_engine
from bot.runtime.config import Config
from bot.runtime.stress_history import like_at, stress_series
from tests.conftest import shared_path

H = 3600.0
D = 86400.0
T0 = datetime(2021, 3, 1, tzinfo=UTC).timestamp()  # a Monday, before DST in both zones


def engine() -> Engine:
    return Engine(RuleSet([], "", []), sessions_from_config(default_sessions()))


def feed(e: Engine, abroad: float, home: float, y10_per_day: float, hourly: bool = True) -> None:
    """Five weekdays of DXY: `abroad` percent per hour from 00:00 to 13:00 UTC (Tokyo and
    London hours), `home` per hour from 13:00 to 22:00 (New York), hourly points or only the
    21:00 close; the 10-year yield's daily close moving `y10_per_day` points a day."""
    dxy, y10 = 97.0, 1.5
    e.add(T0 - 3 * H + 60, "US10Y", y10)  # the close before (21:00 UTC the Sunday)
    for d in range(5):
        for h in range(24):
            t = T0 + d * D + h * H
            dxy *= 1 + (abroad if h < 13 else home if h < 22 else 0.0) / 100
            if hourly or h == 21:
                e.add(t, "DXY", dxy)
        y10 += y10_per_day
        e.add(T0 + d * D + 21 * H + 60, "US10Y", y10)
    e.advance_to(T0 + 4 * D + 22 * H)


def test_dollar_sold_abroad_and_held_at_home_with_yields_up_is_stress() -> None:
    e = engine()
    feed(e, abroad=-0.02, home=0.005, y10_per_day=0.02)
    c = read_engine(e).component("dollar_sessions")
    split = c.legs["asia+europe-us %"]
    assert split is not None and split < -1.0, c.legs
    assert c.legs["US10Y 5d bp"] == pytest.approx(10.0)  # five closes of +2 bp
    assert c.z == pytest.approx(min(-split / SPLIT_TYPICAL, 5.0))
    assert c.z is not None and c.z > 2


def test_the_opposite_split_or_falling_yields_are_not_this_stress() -> None:
    bought_abroad = engine()
    feed(bought_abroad, abroad=0.02, home=-0.005, y10_per_day=0.02)
    assert read_engine(bought_abroad).component("dollar_sessions").z == 0.0
    dash_for_cash = engine()  # bought everywhere, most in New York: the `dollar` component's
    feed(dash_for_cash, abroad=0.005, home=0.05, y10_per_day=0.02)
    r = read_engine(dash_for_cash)
    split = r.component("dollar_sessions")
    assert split.z == 0.0 and (split.legs["asia+europe-us %"] or 0.0) < -1.0
    assert (r.component("dollar").z or 0.0) > 0.5
    bonds_bid = engine()  # dollar sold abroad while Treasuries rally: not sell-America
    feed(bonds_bid, abroad=-0.02, home=0.005, y10_per_day=-0.02)
    r = read_engine(bonds_bid).component("dollar_sessions")
    assert r.z == 0.0 and (r.legs["asia+europe-us %"] or 0.0) < -1.0


def test_a_daily_only_dollar_leaves_the_split_unknown_and_the_weight_with_its_donor() -> None:
    e = engine()
    feed(e, abroad=-0.02, home=0.005, y10_per_day=0.02, hourly=False)
    for d in range(-1, 5):  # SOFR-IORB known: funding takes back the split's weight
        e.add(T0 + d * D + 13 * H, "SOFR-IORB", 0.0)
        e.add(T0 + d * D + 21 * H, "SPX", 4000.0 + d)  # and enough weight for a score
        e.add(T0 + d * D + 21 * H, "VIX", 20.0)
    e.advance_to(T0 + 4 * D + 22 * H)
    r = read_engine(e)
    split = r.component("dollar_sessions")
    assert split.z is None and "dollar_sessions" in r.missing
    funding = r.component("funding")
    assert funding.z is not None and r.score is not None
    donated = WEIGHTS["funding"] + WEIGHTS["dollar_sessions"]
    assert funding.share == pytest.approx(donated / r.coverage)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(default_rules_dir(), Config().sessions)


@pytest.mark.shared
def test_the_split_reads_the_session_dollar_alert_on_2019_2021(rules: RuleSet) -> None:
    path = shared_path("data", "history", "dev-2019-2021.csv.gz")
    h = stress_series([path], rules, every=7 * D)  # the alerts; readings are taken below
    alert = next(a for a in h.alerts if a.rule == "session_dollar" and a.kind is AlertKind.FIRING)
    rep = like_at([path], rules, Config(), alert.ts)
    c = rep.reading.component("dollar_sessions")
    split, dy = c.legs["asia+europe-us %"], c.legs["US10Y 5d bp"]
    assert split is not None and split < -0.5, (iso_utc(alert.ts), c.legs)
    assert dy is not None and dy > 0
    assert c.z is not None and c.z > 1, (iso_utc(alert.ts), c.z)
    assert c.contribution > 0


@pytest.mark.shared
def test_the_split_is_unknown_on_the_daily_2000_2018_file(rules: RuleSet) -> None:
    path = shared_path("data", "history", "dev-2000-2018-daily.csv.gz")
    at = datetime(2001, 9, 21, 21, 0, tzinfo=UTC).timestamp()  # the week after 9/11
    rep = like_at([path], rules, Config(), at)
    r = rep.reading
    assert r.component("dollar_sessions").z is None and "dollar_sessions" in r.missing
    assert r.score is not None and r.score > 50
    # no BTC and no SOFR-IORB in 2001 either: all three are dropped and the others weigh
    # as they did before the split existed (the dollar 0.15 of the 0.8 known)
    gone = WEIGHTS["crypto"] + WEIGHTS["funding"] + WEIGHTS["dollar_sessions"]
    assert r.missing == ["crypto", "dollar_sessions", "funding"]
    assert r.coverage == pytest.approx(1.0 - gone)
    assert r.component("dollar").share == pytest.approx(WEIGHTS["dollar"] / r.coverage)
