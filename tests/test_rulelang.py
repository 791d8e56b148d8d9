"""The rule condition language: safe, typed, three-valued."""

from __future__ import annotations

import pytest

from bot.core.models import SYMBOLS
from bot.engine.rulelang import EvalContext, ExprError, T, compile_expr
from bot.engine.series import Series
from bot.engine.sessions import SessionReturns

H = 3600.0
D = 86400.0


def ctx_with(points: dict[str, list[tuple[float, float]]], now: float) -> EvalContext:
    series = {s: Series(s, k) for s, k in SYMBOLS.items()}
    for sym, pts in points.items():
        for t, v in pts:
            series[sym].add(t, v)
    c = EvalContext(series, SessionReturns({}))
    c.now = now
    return c


def ev(expr: str, c: EvalContext, expect: T = T.BOOL) -> object:
    return compile_expr(expr, [], expect).fn(c)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('ret("BTCUSD", "24h") < -5', "unknown symbol 'BTCUSD' (did you mean 'BTC/USD'?)"),
        ('retrun("BTC/USD", "24h") < -5', "unknown function 'retrun' (did you mean ret()?)"),
        ('__import__("os")', "unknown function '__import__'"),
        ("().__class__", "attribute access"),
        ('ret("BTC/USD", "24h")[0] > 1', "indexing"),
        ('bp("SPX", "1d") > 5', "bp() does not apply to 'SPX'"),
        ('ret("US10Y", "1d") > 5', "ret() does not apply to 'US10Y'"),
        ('ret("BTC/USD", "soon") < 1', "expected a duration"),
        ('ret("BTC/USD") < 1', "ret() takes 2 arguments"),
        ('ret("BTC/USD", "1d")', "must give true/false"),
        ('ret("BTC/USD", "1d") and true', "'and'/'or' needs true/false"),
        ("last(BTC) > 1", 'write the symbol in quotes: "BTC"'),
        ('last("SPX") > USDX', "unknown name 'USDX' (write symbols in quotes"),
        ('last("BTC/USD") > 1 and', "syntax error"),
        ('session_ret("USDX", "mars", "5d") < 0', "unknown session 'mars'"),
        ('low_last("SOFR", 1.5) > 0', "whole number"),
        ("lambda: 1", "lambda is not allowed"),
    ],
)
def test_bad_expressions_are_rejected_with_a_reason(expr: str, message: str) -> None:
    with pytest.raises(ExprError) as e:
        compile_expr(expr, [])
    assert message in e.value.message


def test_error_carries_the_line_and_offending_text() -> None:
    with pytest.raises(ExprError) as e:
        compile_expr('last("SPX") > 1\nand ret("XAU", "5d") < 0', [])
    assert e.value.line == 2
    assert e.value.segment == '"XAU"'


def test_ret_is_percent_over_the_window() -> None:
    c = ctx_with({"BTC/USD": [(0, 100.0), (D, 90.0)]}, now=D)
    assert ev('ret("BTC/USD", "24h")', c, T.NUM) == pytest.approx(-10.0)


def test_bp_of_a_yield_is_in_basis_points() -> None:
    c = ctx_with({"US10Y": [(0, 0.54), (2 * D, 0.88)]}, now=2 * D)
    assert ev('bp("US10Y", "2d")', c, T.NUM) == pytest.approx(34.0)


def test_drawdown_is_from_the_window_high() -> None:
    c = ctx_with({"BTC/USD": [(0, 100.0), (H, 120.0), (2 * H, 90.0)]}, now=2 * H)
    assert ev('drawdown("BTC/USD", "1d")', c, T.NUM) == pytest.approx(25.0)


def test_count_falling_counts_the_symbols_that_fell_more_than_the_threshold() -> None:
    c = ctx_with(
        {
            "BTC/USD": [(0, 100.0), (D, 80.0)],
            "XAU/USD": [(0, 100.0), (D, 96.0)],
            "SPX": [(0, 100.0), (D, 99.0)],
        },
        now=D,
    )
    assert ev('count_falling(["BTC/USD", "XAU/USD", "SPX"], "1d", 3)', c, T.NUM) == 2.0


def test_missing_data_makes_a_comparison_unknown_not_false() -> None:
    c = ctx_with({}, now=D)
    assert ev('ret("BTC/USD", "1d") < -10', c) is None
    assert ev('not (ret("BTC/USD", "1d") < -10)', c) is None


def test_and_is_false_if_any_part_is_false_even_with_unknowns() -> None:
    c = ctx_with({"SPX": [(0, 100.0), (D, 101.0)]}, now=D)
    assert ev('ret("BTC/USD", "1d") < -10 and ret("SPX", "1d") < 0', c) is False
    assert ev('ret("BTC/USD", "1d") < -10 or ret("SPX", "1d") > 0', c) is True


def test_max_ignores_unknown_values() -> None:
    c = ctx_with({"DXY": [(0, 100.0), (D, 102.0)]}, now=D)
    assert ev('max(ret("USDX", "1d"), ret("DXY", "1d"))', c, T.NUM) == pytest.approx(2.0)


def test_low_last_looks_at_the_last_observations_not_a_time_window() -> None:
    c = ctx_with({"SOFR-IORB": [(0, 30.0), (3 * D, 20.0), (4 * D, 16.0)]}, now=10 * D)
    assert ev('low_last("SOFR-IORB", 2)', c, T.NUM) == 16.0
    assert ev('low_last("SOFR-IORB", 4)', c, T.NUM) is None


def test_stale_is_true_when_nothing_new_arrived_in_the_window() -> None:
    c = ctx_with({"SOFR": [(0, 5.3)]}, now=5 * D)
    assert ev('stale("SOFR", "4d")', c) is True
    assert ev('stale("SOFR", "6d")', c) is False


def test_arithmetic_and_chained_comparisons() -> None:
    c = ctx_with({"SPX": [(0, 100.0), (D, 95.0)]}, now=D)
    assert ev('-11 < ret("SPX", "1d") * 2 <= -10 + 0.0', c) is True
    assert ev('-10 < ret("SPX", "1d") * 2', c) is False
    assert ev('ret("SPX", "1d") / 0 > 1', c) is None


def test_lookback_records_the_longest_window_per_symbol() -> None:
    c = compile_expr('ret("BTC/USD", "1d") < 0 and drawdown("BTC/USD", "7d") > 5', [])
    assert c.lookback == {"BTC/USD": 7 * D}


def test_zscore_measures_a_move_against_the_regime() -> None:
    calm = [(k * D, 1.0 + 0.01 * (k % 2)) for k in range(40)]  # +-1 bp a day
    c = ctx_with({"US10Y": [*calm, (40 * D, 1.20)]}, now=40 * D)
    z = ev('zscore("US10Y", "1d", "30d")', c, T.NUM)
    assert isinstance(z, float) and z > 10


def test_zscore_needs_a_lookback_of_ten_windows() -> None:
    with pytest.raises(ExprError, match="at least 11 windows"):
        compile_expr('zscore("US10Y", "1d", "5d") > 3', [])


def test_coalesce_gives_the_first_known_value() -> None:
    c = ctx_with({"SPX": [(0, 100.0), (D, 90.0)]}, now=D)
    assert ev('coalesce(ret("BTC/USD", "1d"), ret("SPX", "1d"), 0)', c, T.NUM) == (
        pytest.approx(-10.0)
    )
    assert ev('coalesce(ret("BTC/USD", "1d"), 7)', c, T.NUM) == 7.0


# ---- regime-relative and logic functions (issue 10) -----------------------------------------


def _alternating(days: int, step_pct: float) -> list[tuple[float, float]]:
    """A daily price that moves +-step_pct % every day: a regime of known volatility."""
    out, v = [], 100.0
    for k in range(days):
        out.append((k * D, v))
        v *= 1 + (step_pct if k % 2 == 0 else -step_pct) / 100
    return out


def test_sigma_is_the_move_in_units_of_the_regimes_typical_move() -> None:
    pts = _alternating(200, 1.0)  # every 1-day move is about 1%
    last_t, last_v = pts[-1]
    c = ctx_with({"XAU/USD": [*pts, (last_t + D, last_v * 0.95)]}, now=last_t + D)
    assert ev('vol("XAU/USD", "1d", "180d")', c, T.NUM) == pytest.approx(1.0, rel=0.02)
    assert ev('sigma("XAU/USD", "1d", "180d")', c, T.NUM) == pytest.approx(-5.0, rel=0.03)


def test_the_same_move_counts_less_in_a_volatile_regime() -> None:
    calm, wild = _alternating(200, 0.5), _alternating(200, 2.0)
    t, v = calm[-1]
    c1 = ctx_with({"XAU/USD": [*calm, (t + D, v * 0.97)]}, now=t + D)
    t, v = wild[-1]
    c2 = ctx_with({"XAU/USD": [*wild, (t + D, v * 0.97)]}, now=t + D)
    s1 = ev('sigma("XAU/USD", "1d", "180d")', c1, T.NUM)
    s2 = ev('sigma("XAU/USD", "1d", "180d")', c2, T.NUM)
    assert isinstance(s1, float) and isinstance(s2, float)
    assert s1 == pytest.approx(-6.0, rel=0.05) and s2 == pytest.approx(-1.5, rel=0.05)


def test_sigma_of_a_yield_is_against_its_changes_and_ignores_the_current_move() -> None:
    calm = [(k * D, 1.0 + 0.05 * (k % 2)) for k in range(121)]  # 5 bp a day, ends at 1.0
    c = ctx_with({"US10Y": [*calm, (121 * D, 1.25)]}, now=121 * D)
    assert ev('vol("US10Y", "1d", "90d")', c, T.NUM) == pytest.approx(5.0, rel=0.05)
    assert ev('sigma("US10Y", "1d", "90d")', c, T.NUM) == pytest.approx(5.0, rel=0.05)


def test_sigma_is_unknown_on_short_history_unless_a_typical_move_is_given() -> None:
    pts = [(0.0, 100.0), (D, 100.0), (2 * D, 90.0)]
    c = ctx_with({"BTC/USD": pts}, now=2 * D)
    assert ev('sigma("BTC/USD", "1d", "365d")', c, T.NUM) is None
    assert ev('sigma("BTC/USD", "1d", "365d", 4)', c, T.NUM) == pytest.approx(-2.5)
    with pytest.raises(ExprError, match="plain positive number"):
        compile_expr('sigma("BTC/USD", "1d", "365d", last("SPX")) < 0', [])


def test_sigma_works_on_daily_closes_with_windows_of_days() -> None:
    """Daily-only data: a 5-day sigma is known (no window shorter than the data's spacing)."""
    pts = _alternating(400, 1.0)
    c = ctx_with({"SPX": pts}, now=pts[-1][0])
    v = ev('sigma("SPX", "5d", "365d")', c, T.NUM)
    assert isinstance(v, float)


def test_max_drop_sees_a_recovered_wick_that_the_return_hides() -> None:
    pts = [(0.0, 100.0), (H, 100.0), (H + 60, 80.0), (H + 600, 98.0), (2 * H, 99.0)]
    c = ctx_with({"BTC/USD": pts}, now=2 * H)
    assert ev('max_drop("BTC/USD", "24h")', c, T.NUM) == pytest.approx(20.0)
    assert ev('drawdown("BTC/USD", "24h")', c, T.NUM) == pytest.approx(1.0)
    rising = ctx_with({"BTC/USD": [(0.0, 80.0), (H, 100.0)]}, now=H)
    assert ev('max_drop("BTC/USD", "24h")', rising, T.NUM) == 0.0


def test_count_counts_true_conditions_and_ignores_unknown_ones() -> None:
    c = ctx_with({"SPX": [(0, 100.0), (D, 90.0)], "XAU/USD": [(0, 100.0), (D, 101.0)]}, now=D)
    expr = 'count(ret("SPX", "1d") < -5, ret("XAU/USD", "1d") < -5, ret("BTC/USD", "1d") < -5)'
    assert ev(expr, c, T.NUM) == 1.0
    assert ev('count(ret("BTC/USD", "1d") < -5)', c, T.NUM) is None
    with pytest.raises(ExprError, match="count\\(\\) needs true/false"):
        compile_expr('count(ret("SPX", "1d")) > 0', [])


def test_known_says_whether_a_value_is_known_and_is_never_unknown() -> None:
    c = ctx_with({"BTC/USD": [(0, 100.0), (D, 80.0)]}, now=D)
    assert ev('known(ret("SPX", "5d"))', c) is False
    assert ev('known(ret("BTC/USD", "1d") < 0)', c) is True
    # the weekend idiom: a crypto rule that still decides when equities are unknown
    assert (
        ev(
            'ret("BTC/USD", "1d") < -10 and (not known(ret("SPX", "5d")) or ret("SPX", "5d") > -5)',
            c,
        )
        is True
    )


def test_age_h_is_hours_since_the_latest_observation() -> None:
    c = ctx_with({"SPX": [(0, 100.0)]}, now=2 * D)
    assert ev('age_h("SPX")', c, T.NUM) == pytest.approx(48.0)
    assert ev('age_h("NDX")', c, T.NUM) is None
    assert compile_expr('age_h("SPX") > 1', []).uses_clock
