"""The stress gauge (bot/engine/stress.py): range, direction, reweighting of missing
components, insensitivity to duplicated ticks, and `stress()` in the rule language."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.config import default_sessions
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet
from bot.engine.rulelang import ExprError, T, compile_expr
from bot.engine.sessions import sessions_from_config
from bot.engine.stress import COMPONENT_NAMES, WEIGHTS, read_engine, transform

H = 3600.0
D = 86400.0
T0 = 1_600_000_000.0 // D * D

DAILY = ("SPX", "NDX", "N225", "XAG/USD", "DXY", "US2Y", "US10Y", "US30Y", "VIX")
BASE = {"SPX": 3000.0, "NDX": 9000.0, "N225": 20000.0, "XAG/USD": 17.0, "DXY": 97.0}
BASE |= {"US2Y": 1.5, "US10Y": 1.8, "US30Y": 2.3, "VIX": 15.0, "BTC/USD": 9000.0}
BASE |= {"XAU/USD": 1500.0}


def engine() -> Engine:
    return Engine(RuleSet([], "", []), sessions_from_config(default_sessions()))


def feed(e: Engine, days: int, shock: dict[str, float] | None = None) -> None:
    """`days` of calm daily closes (and hourly BTC, gold), then on the last day `shock`
    (symbol -> relative move; yields: percentage points)."""
    shock = shock or {}
    for d in range(days):
        wiggle = 0.002 * math.sin(d * 1.7)
        last = d == days - 1
        for h in range(24):
            t = T0 + d * D + h * H
            for sym in ("BTC/USD", "XAU/USD"):
                m = shock.get(sym, 0.0) * h / 23 if last else 0.0
                e.add(t, sym, BASE[sym] * (1 + wiggle + 0.001 * math.sin(h) + m))
        t = T0 + d * D + 21 * H + 30
        for sym in DAILY:
            if sym.startswith("US"):
                e.add(t, sym, BASE[sym] + wiggle * 5 + (shock.get(sym, 0.0) if last else 0.0))
            else:
                e.add(t, sym, BASE[sym] * (1 + wiggle + (shock.get(sym, 0.0) if last else 0.0)))
    e.finish()


def test_calm_markets_read_low_and_a_crash_reads_high() -> None:
    calm = engine()
    feed(calm, 30)
    r = read_engine(calm)
    assert r.score is not None and r.score < 20
    crash = engine()
    feed(
        crash,
        30,
        {"SPX": -0.09, "NDX": -0.1, "N225": -0.07, "BTC/USD": -0.35, "XAU/USD": -0.04}
        | {"XAG/USD": -0.08, "DXY": 0.02, "VIX": 0.8, "US10Y": 0.3},
    )
    r = read_engine(crash)
    assert r.score is not None and r.score > 80
    top = max(r.components, key=lambda c: c.contribution)
    assert top.name in ("equities", "vix", "crypto")
    assert sum(c.contribution for c in r.components) == pytest.approx(r.score)


def test_direction_matters_a_rally_is_not_stress() -> None:
    up = engine()
    feed(up, 30, {"SPX": 0.06, "NDX": 0.07, "N225": 0.05, "BTC/USD": 0.2, "VIX": -0.3})
    r = read_engine(up)
    assert r.score is not None and r.score < 20
    assert r.component("equities").z == 0.0 and r.component("crypto").z == 0.0


def test_missing_components_are_reweighted_and_named() -> None:
    e = engine()
    feed(e, 30)  # no SOFR-IORB, no USDX legs: funding unknown; daily DXY: no session split
    r = read_engine(e)
    assert "funding" in r.missing and "dollar_sessions" in r.missing
    assert r.coverage == pytest.approx(1.0 - WEIGHTS["funding"] - WEIGHTS["dollar_sessions"])
    known = [c for c in r.components if c.z is not None]
    assert sum(c.share for c in known) == pytest.approx(1.0)
    only_btc = engine()
    for h in range(48):
        only_btc.add(T0 + h * H, "BTC/USD", 9000.0 - 50 * h)
    assert read_engine(only_btc).score is None  # 10% of the weight is not a gauge


def test_transform_is_monotone_from_0_to_100() -> None:
    zs = [i / 10 for i in range(0, 80)]
    vals = [transform(z) for z in zs]
    assert vals[0] == 0.0 and all(a <= b for a, b in itertools.pairwise(vals))
    assert vals[-1] <= 100.0 and transform(-3) == 0.0


ticks = st.lists(
    st.tuples(
        st.integers(0, 24 * 40),  # hour
        st.sampled_from(["BTC/USD", "SPX", "VIX", "US10Y", "XAU/USD", "DXY", "N225"]),
        st.floats(0.5, 2.0),
        st.booleans(),  # delivered twice
    ),
    min_size=20,
    max_size=300,
)


@settings(max_examples=30, deadline=None)
@given(ticks)
def test_score_is_in_range_and_duplicated_ticks_change_nothing(
    rows: list[tuple[int, str, float, bool]],
) -> None:
    rows.sort(key=lambda r: r[0])
    once, twice = engine(), engine()
    scores: list[tuple[float | None, float | None]] = []
    for hour, sym, x, dup in rows:
        t = T0 + hour * H
        v = BASE.get(sym, 100.0) * x if sym != "US10Y" else x
        once.add(t, sym, v)
        twice.add(t, sym, v)
        if dup:
            twice.add(t, sym, v)
        a, b = read_engine(once, t), read_engine(twice, t)
        assert a.to_json() == b.to_json()
        scores.append((a.score, b.score))
    for a, _ in scores:
        assert a is None or 0.0 <= a <= 100.0


def test_stress_functions_in_the_rule_language() -> None:
    c = compile_expr('stress() > 80 and stress_component("crypto") > 2', ["asia"])
    assert c.type is T.BOOL
    assert "BTC/USD" in c.symbols and c.lookback["VIX"] >= 365 * D
    for bad, msg in (
        ('stress("x") > 1', "takes no arguments"),
        ('stress_component("bitcoin") > 1', "unknown stress component 'bitcoin'"),
        ("stress_component(1) > 1", "a name in quotes"),
    ):
        with pytest.raises(ExprError, match=msg):
            compile_expr(bad, ["asia"])
    assert set(COMPONENT_NAMES) >= {"equities", "crypto", "dollar", "vix", "funding"}
    e = engine()
    feed(e, 30, {"BTC/USD": -0.3})
    e.ctx.now = e.clock
    fn = compile_expr('stress_component("crypto")', ["asia"], expect=T.NUM).fn
    assert fn(e.ctx) == read_engine(e).component("crypto").z
    assert fn(e.ctx) > 2
