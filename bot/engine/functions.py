"""The window functions behind the rule language's function table (`bot.engine.rulelang`).

Each builder returns a closure over an `EvalContext`-like object (``c.series``, ``c.now``,
``c.sessions``) giving a number, a truth value, or None for "unknown".

Regime functions (`sigma`, `vol`). A move means little without the regime it happens in: 3%
in five days is a shock for gold in a calm year and routine in a volatile one. `vol(SYM, W,
LOOKBACK)` is the root mean square of the W-changes (percent for prices, basis points for
yields and rates, the series' units otherwise) ending every day (every W when W is shorter)
across LOOKBACK, the newest ending one window before the current move, so the move being
judged never inflates its own yardstick. `sigma(SYM, W, LOOKBACK)` is the change over W
divided by that; `sigma(SYM, W, LOOKBACK, TYPICAL)` uses the number TYPICAL (a long-run
typical W-move, in percent or bp) while the regime is unknown, so a fresh start or a short
replay is judged against a stated yardstick instead of not at all. The regime is sampled at a
coarse step (the start of the current UTC day, or of the current window when W is shorter
than a day). It reads only points at least W old, so it is kept (one per series, window and
lookback, whatever rule asks) while those stand as they were, and at the next step only the
newest changes are computed: a rule evaluated every second costs a few lookups, not a scan
of a year of points, and the result is always what a fresh computation gives (a late tick,
a correction or a gap in that past is taken in at once). Unknown changes (missing input) are
skipped; with fewer than 10 known reference changes or than a quarter of the lookback's (a
regime is not two weeks of history), or none of them non-zero, it is unknown.

`max_drop(SYM, W)` is the deepest fall from a high to a later low inside W, in percent: an
intraday liquidation wick that has already recovered still shows (bars keep their highs and
lows). It reads every point of the window, so put cheaper clauses before it in a rule.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from bot.core.models import SYMBOLS, Kind
from bot.engine import blocks
from bot.engine.series import Series

Value = float | bool | None
Fn = Callable[[Any], Any]

DAY = 86400.0
MIN_REFERENCE = 10  # known reference changes a regime needs (and a quarter of the lookback's)


def regime_step(window: float) -> float:
    """How often the regime of `vol`/`sigma` is re-sampled."""
    return DAY if window >= DAY else window


def _scale(sym: str) -> float:
    kind = SYMBOLS[sym]
    return 100.0 if kind in (Kind.PRICE, Kind.RATE) else 1.0


def _change(s: Series, a: float, b: float) -> float | None:
    """The change from time a to b: a simple return for prices, a difference otherwise."""
    x, y = s.value_at(a), s.value_at(b)
    if x is None or y is None:
        return None
    return (y / x - 1.0) if s.kind is Kind.PRICE else (y - x)


def _squares(s: Series, end: float, window: float, step: float, n: int) -> list[float | None]:
    """The squared `window`-changes ending at `end`, `end - step`, ... (n of them, newest
    first; None where unknown)."""
    out: list[float | None] = []
    for _ in range(n):
        ch = _change(s, end - window, end)
        end -= step
        out.append(None if ch is None else ch * ch)
    return out


def _rms(squares: list[float | None], n: int) -> float | None:
    # summed newest first, in one order whatever computed them; `filter` drops the unknown
    # ones and the zeros, and adding a zero to a sum of squares changes nothing
    known = len(squares) - squares.count(None)
    if _PLAIN_SUM:
        total = sum(filter(None, squares), 0.0)
    else:
        total = 0.0
        for sq in filter(None, squares):
            total += sq
    if known < max(MIN_REFERENCE, n // 4) or total <= 0.0:
        return None
    return math.sqrt(total / known)


#: Before 3.12 `sum()` of floats adds left to right in doubles, exactly the loop above; 3.12
#: made it Neumaier-compensated (https://github.com/python/cpython/issues/100425), which rounds
#: differently, so there the loop is kept and a result never depends on the Python version.
_PLAIN_SUM = sys.version_info < (3, 12)


def regime_vol(s: Series, anchor: float, window: float, step: float, n: int) -> float | None:
    """RMS of the n `window`-changes ending every `step` back from `anchor - window`."""
    return _rms(_squares(s, anchor - window, window, step, n), n)


class _Regime:
    """One regime of a series, shared by every `sigma`/`vol` call with its window and
    lookback (kept in `Series.memo`). Its changes read the values known from `oldest` (the
    first time sampled) to `anchor - window`, which depend only on the points from the
    newest at or before `oldest` to the newest at or before `anchor - window` and on the
    gaps. Those points stand as they were while the gaps and the series' `rewrites` are
    unchanged, and their number and first and last point too (appends, compaction and
    trimming change one of these when they change one of them): then the result is kept,
    and when the anchor moves on only the changes ending after the old `anchor - window`
    are computed, so it is always what `regime_vol` gives."""

    __slots__ = ("anchor", "bounds", "edits", "gaps", "n", "oldest", "rewrites", "squares", "vol")

    def __init__(self) -> None:
        self.anchor = -math.inf
        self.oldest = -math.inf
        self.bounds: tuple[Any, ...] = ()  # (count, first point, last point) read
        self.rewrites = -1
        self.gaps: list[tuple[float, float]] = []
        self.squares: list[float | None] = []
        self.vol: float | None = None
        self.edits = -1  # the series' `edits` and length when last computed
        self.n = 0

    def at(
        self, s: Series, anchor: float, window: float, step: float, n: int, shift: bool
    ) -> float | None:
        """The regime at `anchor`; `shift`: the changes of an older anchor may be kept."""
        settled = s.rewrites == self.rewrites and s.gaps == self.gaps
        if settled and not (
            # only appends after the points read since (no other change bumps no `edits`)
            s.edits == self.edits and (len(s.ts) == self.n or s.ts[self.n] > self.anchor - window)
        ):
            settled = self._bounds(s, self.oldest, self.anchor - window) == self.bounds
            if settled:  # what it read stands: watch the appends from here
                self.edits, self.n = s.edits, len(s.ts)
        if anchor == self.anchor and settled:
            return self.vol
        k = n  # the changes to compute, newest first
        if shift and anchor > self.anchor and settled:
            k = min(round((anchor - self.anchor) / step), n)
        end = anchor - window
        squares = _squares(s, end, window, step, k)
        if k < n:
            squares += self.squares[: n - k]
        if end.is_integer() and step.is_integer() and abs(end) + n * step < 2.0**52:
            oldest = end - (n - 1) * step  # whole seconds: exactly what the loop gives
        else:
            oldest = end
            for _ in range(n - 1):  # as `_squares` steps back
                oldest -= step
        self.anchor, self.oldest, self.squares = anchor, oldest - window, squares
        self.bounds = self._bounds(s, self.oldest, end)
        self.rewrites, self.gaps, self.vol = s.rewrites, list(s.gaps), _rms(squares, n)
        self.edits, self.n = s.edits, len(s.ts)
        return self.vol

    @staticmethod
    def _bounds(s: Series, oldest: float, end: float) -> tuple[Any, ...]:
        tss = s.ts
        i = bisect_right(tss, oldest) - 1
        j = bisect_right(tss, end) - 1
        first = (tss[i], s.values[i]) if i >= 0 else None
        last = (tss[j], s.values[j]) if j >= 0 else None
        return (j - i, first, last)


def regime_fn(
    sym: str, window: float, span: float, normalise: bool, default: float | None = None
) -> Fn:
    """`sigma` (normalise=True) or `vol` (False) of `sym`; `default` is the typical move (in
    percent or bp) that stands in while the regime is unknown (too little history)."""
    step = regime_step(window)
    n = max(int((span - window) // step), 1)
    scale = _scale(sym)
    fallback = None if default is None else default / scale
    key = ("regime", window, step, n)
    # with whole seconds, the times sampled from two anchors coincide exactly
    shift = window.is_integer() and step.is_integer()

    def vol_of(s: Series, now: float) -> float | None:
        r = s.memo.get(key)
        if r is None:
            r = s.memo[key] = _Regime()
        anchor = now // step * step
        if (  # `_Regime.at`'s first answer, without the call: same anchor, only appends since
            anchor == r.anchor
            and s.edits == r.edits
            and s.rewrites == r.rewrites
            and (len(s.ts) == r.n or s.ts[r.n] > anchor - window)
            and s.gaps == r.gaps
        ):
            v = r.vol
        else:
            v = r.at(s, anchor, window, step, n, shift)
        return fallback if v is None else v

    def next_anchor(now: float) -> float:
        # the anchor now // step * step holds before this (exact with whole seconds)
        return (now // step + 1.0) * step if step.is_integer() else now

    if normalise:
        price = SYMBOLS[sym] is Kind.PRICE

        def sigma(s: Series, now: float) -> tuple[Value, float, float]:
            x, h_start = _at(s, now - window)
            y, h_now = _at(s, now)
            h_now = min(h_now, next_anchor(now))
            if x is None or y is None:
                return None, h_now, h_start
            ch = (y / x - 1.0) if price else (y - x)  # as `_change`
            v = vol_of(s, now)
            return (None if v is None else ch / v), h_now, h_start

        return _cached(sym, ("sigma", sym, window, span, default), window, sigma)

    def vol(s: Series, now: float) -> tuple[Value, float, float]:
        v = vol_of(s, now)
        return (None if v is None else v * scale), next_anchor(now), math.inf

    return _cached(sym, ("vol", sym, window, span), 0.0, vol)


# ---- memos of function values across evaluations -------------------------------------------
#
# A window function's value depends on its series' points and gaps and on where `now` and
# `now - W` fall among them. While the series is unchanged (its `edits`, its length, its
# gaps: every change bumps one of them) the value is the same for every `now` until the next
# instant either boundary reaches a point or the start of a gap, or (sigma, vol) the regime
# is re-sampled. So each value is kept in `Series.memo` with that validity (per engine,
# whatever rule asks) and computed again only when it may have changed: what a fresh
# computation gives, at a dictionary lookup.

Compute = Callable[[Series, float], tuple[Value, float, float]]
_KEYS: dict[tuple[Any, ...], int] = {}


def _key(spec: tuple[Any, ...]) -> int:
    """A small int per distinct function call (the same call in two rules shares it)."""
    return _KEYS.setdefault(spec, len(_KEYS))


def _until(tss: list[float], gaps: list[tuple[float, float]], i: int, t: float) -> float:
    """The value known at `t` (from point i, the newest at or before it) holds for every
    later time before this: the next point, or the start of a gap after `t`."""
    h = tss[i + 1] if i + 1 < len(tss) else math.inf
    for g0, _ in gaps:
        if t <= g0 < h:
            h = g0
    return h


def _at(s: Series, t: float) -> tuple[float | None, float]:
    """`s.value_at(t)`, and the time before which it holds (`_until`)."""
    tss = s.ts
    i = bisect_right(tss, t) - 1
    h = tss[i + 1] if i + 1 < len(tss) else math.inf
    gaps = s.gaps
    if gaps:
        for g0, _ in gaps:
            if t <= g0 < h:
                h = g0
        if i < 0 or not s.known_through(tss[i], t):
            return None, h
    elif i < 0:
        return None, h
    return s.values[i], h


def _horizons(s: Series, now: float, window: float) -> tuple[float, float]:
    """(bound on `now`, bound on `now - window`) before which the points and gaps a window
    function reads at `now` stay the same."""
    tss, gaps = s.ts, s.gaps
    a = now - window
    return (
        _until(tss, gaps, bisect_right(tss, now) - 1, now),
        _until(tss, gaps, bisect_right(tss, a) - 1, a),
    )


def _cached(sym: str, spec: tuple[Any, ...], window: float, compute: Compute) -> Fn:
    """`compute(series, now)` -> (value, bound on now, bound on now - window), memoised."""
    key = _key(spec)

    def cached(c: Any) -> Value:
        s: Series = c.series[sym]
        now: float = c.now
        e = s.memo.get(key)
        if (
            e is not None
            and e[0] == s.edits
            and e[1] == len(s.ts)
            and e[2] == len(s.gaps)
            and e[3] <= now < e[4]
            and now - window < e[5]
        ):
            return e[6]  # type: ignore[no-any-return]
        v, h_now, h_start = compute(s, now)
        s.memo[key] = (s.edits, len(s.ts), len(s.gaps), now, h_now, h_start, v)
        return v

    return cached


def _timeless(sym: str, spec: tuple[Any, ...], fn: Callable[[Series], Value]) -> Fn:
    """A function of the series' points alone (not of `now`), memoised."""
    return _cached(sym, spec, 0.0, lambda s, now: (fn(s), math.inf, math.inf))


def _extreme_fn(sym: str, name: str, w: float) -> Fn:
    """high() or low(): `Series.high`/`low` with the window's bisects shared with the
    validity bounds; the other of the two over the same window is memoised alongside (rules
    read a day's range as high and low together)."""
    high = name == "high"
    other = _key(("low" if high else "high", sym, w))

    def extreme(s: Series, now: float) -> tuple[Value, float, float]:
        tss, gaps = s.ts, s.gaps
        a = now - w
        i = bisect_right(tss, a) - 1
        j = bisect_right(tss, now)
        r = i  # as `Series._window`: the value at the window's start, when known there
        if i >= 0 and gaps and not s.known_through(tss[i], a):
            r = -1
        hi, lo = blocks.high_low(s, r, i + 1, j)
        h_now, h_start = _until(tss, gaps, j - 1, now), _until(tss, gaps, i, a)
        s.memo[other] = (s.edits, len(tss), len(gaps), now, h_now, h_start, lo if high else hi)
        return (hi if high else lo), h_now, h_start

    return _cached(sym, (name, sym, w), w, extreme)


def _extent_fn(sym: str, name: str, w: float) -> Fn:
    """drawdown() or rally(): `Series.drawdown`/`rally` with the window's high or low from
    the block summaries (`bot.engine.blocks`)."""
    down = name == "drawdown"

    def compute(s: Series, now: float) -> tuple[Value, float, float]:
        hi, lo = blocks.high_low(s, *s._window(now, w))
        ext, cur = (hi if down else lo), s.value_at(now)
        if ext is None or cur is None:
            v = None
        else:
            v = (1.0 - cur / ext) * 100.0 if down else (cur / ext - 1.0) * 100.0
        return v, *_horizons(s, now, w)

    return _cached(sym, (name, sym, w), w, compute)


def max_drop_fn(sym: str, window: float) -> Fn:
    def max_drop(s: Series, now: float) -> tuple[Value, float, float]:
        return blocks.max_drop(s, *s._window(now, window)), *_horizons(s, now, window)

    return _cached(sym, ("max_drop", sym, window), window, max_drop)


def zscore_fn(sym: str, w: float, span: float) -> Fn:
    return lambda c: c.series[sym].zscore(c.now, w, span)


def window_fn(name: str, syms: list[str], w: float, session: str, pct: float, count: int) -> Fn:
    s0 = syms[0]
    if name == "last":
        return _timeless(s0, ("last", s0), Series.last)
    if name in ("high", "low"):
        return _extreme_fn(s0, name, w)
    if name in ("drawdown", "rally"):
        return _extent_fn(s0, name, w)
    if name in ("ret", "change", "bp"):
        scale = 1.0 if SYMBOLS[s0] is Kind.SPREAD_BP else 100.0
        how = name

        def move(s: Series, now: float) -> tuple[Value, float, float]:
            a, h_start = _at(s, now - w)
            b, h_now = _at(s, now)
            if a is None or b is None:
                return None, h_now, h_start
            if how == "ret":  # as `Series.ret`, `Series.change`
                return (b / a - 1.0) * 100.0, h_now, h_start
            return ((b - a) * scale if how == "bp" else b - a), h_now, h_start

        return _cached(s0, (name, s0, w), w, move)
    if name == "mean":  # time-weighted: changes with every instant
        return lambda c: c.series[s0].mean(c.now, w)
    if name == "session_ret":  # cached by the session tables
        return lambda c: c.sessions.sum(c.series[s0], session, c.now, w)
    if name in ("count_falling", "count_rising"):
        falling = name == "count_falling"

        def counter(c: Any) -> Value:
            n = 0
            known = False
            for s in syms:
                r = c.series[s].ret(c.now, w)
                if r is None:
                    continue
                known = True
                if (r < -pct) if falling else (r > pct):
                    n += 1
            return float(n) if known else None

        return counter
    if name in ("low_last", "high_last"):
        agg = min if name == "low_last" else max

        def last_n(s: Series) -> Value:
            v = s.last_n(count)
            return None if v is None else agg(v)

        return _timeless(s0, (name, s0, count), last_n)
    if name == "prev":

        def prev(s: Series) -> Value:
            v = s.last_n(2)
            return None if v is None else v[0]

        return _timeless(s0, ("prev", s0), prev)
    if name == "stale":

        def stale(c: Any) -> Value:
            t = c.series[s0].last_ts()
            return t is None or c.now - t > w

        return stale
    if name == "age_h":

        def age(c: Any) -> Value:
            t = c.series[s0].last_ts()
            return None if t is None else (c.now - t) / 3600.0

        return age
    if name == "max_drop":
        return max_drop_fn(s0, w)
    raise AssertionError(name)  # pragma: no cover - SIGNATURES and this stay in step
