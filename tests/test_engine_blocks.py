"""Window scans read block summaries (`bot.engine.blocks`); whatever the series went through
(appends, later ticks of the newest second, late ticks, corrections, compaction into bars,
trimming, a derived series recomputed from a time), `max_drop` and `high`/`low` give exactly
what a scan of every point gives."""

from __future__ import annotations

from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.models import Kind
from bot.engine.blocks import BLOCK, high_low, max_drop, scan_high_low, scan_max_drop
from bot.engine.functions import window_fn
from bot.engine.series import Series

T0 = 1_700_000_000.0

Op = tuple[str, float, float]
OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["append"] * 6 + ["same second", "late", "correct", "compact", "trim", "truncate"]
        ),
        st.floats(0.0, 1.0),
        st.floats(-0.02, 0.02),
    ),
    min_size=1,
    max_size=60,
)


def _apply(s: Series, op: Op, t: float) -> float:
    what, x, move = op
    last = s.values[-1] if s.values else 100.0
    if what == "append":
        for _ in range(int(1 + x * 3 * BLOCK)):  # up to three blocks of points
            t += 1.0 + 9.0 * x
            last *= 1.0 + move * (0.5 - x)
            s.add(t, last)
    elif what == "same second" and s.ts:
        s.add(s.ts[-1] + 0.25 * x, last * (1.0 + move))
    elif s.ts and what in ("late", "correct", "compact", "trim", "truncate"):
        at = s.ts[0] + x * (s.ts[-1] - s.ts[0])
        if what == "late":
            s.add(at + 0.5, last * (1.0 + move))
        elif what == "correct":
            i = bisect_right(s.ts, at) - 1
            s.add(s.ts[max(i, 0)], s.values[max(i, 0)] * (1.0 + move))
        elif what == "compact":
            s.compact(at)
        elif what == "trim":
            s.trim(at)
        else:
            s.truncate_from(at)
            t = s.ts[-1] if s.ts else t
    return t


def _check_windows(s: Series, x: float) -> int:
    """Compare both ways over windows ending at the newest point and inside the series."""
    n = len(s.ts)
    compared = 0
    for k, j in ((int(x * n), n), (0, n), (int(x * n / 2), int(n * (0.5 + x / 2)))):
        for r in (k - 1, -1):
            assert max_drop(s, r, k, j) == scan_max_drop(s, r, k, j), (r, k, j)
            assert high_low(s, r, k, j) == scan_high_low(s, r, k, j), (r, k, j)
            compared += 1
    return compared


@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_block_scans_equal_scans_of_every_point_whatever_the_series_went_through(
    ops: list[Op],
) -> None:
    s = Series("BTC/USD", Kind.PRICE)
    t = T0
    for op in ops:
        t = _apply(s, op, t)
        _check_windows(s, op[1])


def test_a_long_window_is_read_from_block_summaries() -> None:
    s = Series("BTC/USD", Kind.PRICE)
    for i in range(20 * BLOCK):
        s.add(T0 + i, 100.0 + (i % 37) - (i % 11))
    s.compact(T0 + 5 * BLOCK + 0.5)  # bars at the front, points after them
    n = len(s.ts)
    assert max_drop(s, 3, 4, n) == scan_max_drop(s, 3, 4, n)
    assert high_low(s, -1, 4, n) == scan_high_low(s, -1, 4, n)
    assert "blocks" in s.memo  # the summaries were made and used
    s.add(s.ts[-1] + 1.0, 1.0)  # a crash on the newest point: only the end is read again
    n = len(s.ts)
    assert max_drop(s, 3, 4, n) == scan_max_drop(s, 3, 4, n) > 98.0


class _Ctx:
    def __init__(self, s: Series, now: float) -> None:
        self.series = {s.symbol: s}
        self.now = now


@settings(max_examples=100, deadline=None)
@given(ops=OPS, back=st.floats(0.05, 1.0))
def test_the_rule_functions_drawdown_and_rally_are_the_series_own(
    ops: list[Op], back: float
) -> None:
    s = Series("BTC/USD", Kind.PRICE)
    t = T0
    for op in ops:
        t = _apply(s, op, t)
        if not s.ts:
            continue
        w = max(back * (s.ts[-1] - s.ts[0]), 1.0)
        now = s.ts[-1]
        drawdown = window_fn("drawdown", ["BTC/USD"], w, "", 0.0, 0)
        rally = window_fn("rally", ["BTC/USD"], w, "", 0.0, 0)
        assert drawdown(_Ctx(s, now)) == s.drawdown(now, w)
        assert rally(_Ctx(s, now)) == s.rally(now, w)
