"""A symbol's recent history and the window functions rules are written with.

Observations. A series keeps one point per second: the latest tick of that second (its
"close"). A tick equal to the point already held for its time is a duplicate and changes
nothing; a different value at the same time is a correction; an older tick inside a second
whose later close is held is absorbed (it cannot change that second's close).

Bars. History older than a couple of hours is compacted into 5-minute bars (`compact`). A bar
keeps, besides its close (and the time of its last observation, which is the point's time),
its first observation's time and value, the highest and lowest 1-second close in it, and the
time integral of its values, so `high`, `low`, `drawdown`, `rally` and `mean` mean the same
at every age: highs and lows survive compaction and `mean` is weighted by time, not by the
number of points. Points ``[0, nb)`` are bars; ``[nb, len)`` are 1-second points, whose
open, high and low are their close and whose integral is zero.

Gaps. `gaps` (shared by every series of an engine) lists spans of event time in which the
input is known to be missing. A value is never taken as "known at t" if a gap lies between
its observation and t: `value_at` says unknown instead, so `ret`, `change`, `zscore` and
session returns never compare across missing data as if it were the window. `high`, `low`
and `mean` use the observations they have inside the window (and the value at the window's
start only when it is known there).

Points are kept sorted by time in parallel lists, so a window lookup is a bisect. "Now" is
always the engine's event clock, never the wall clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from bot.core.models import Kind

TICK_RESOLUTION = 1.0  # seconds: a series keeps the latest tick of each second
BAR = 300.0  # seconds: the bars older history is compacted into

# what `Series.add` did with a tick
ADDED = ""  # in time order
LATE = "late"  # older than the newest point, placed in time order
DUPLICATE = "duplicate"  # equal to the point held for its time: nothing changed
ABSORBED = "absorbed"  # older than the close of its second (or inside a bar's range)
CORRECTED = "corrected"  # a new value for a time already held


class Series:
    __slots__ = (
        "b_area",
        "b_high",
        "b_low",
        "b_open",
        "b_t0",
        "dirty_from",
        "edits",
        "gaps",
        "head_cut",
        "kind",
        "memo",
        "nb",
        "reshapes",
        "rewrites",
        "symbol",
        "ts",
        "values",
    )

    def __init__(
        self, symbol: str, kind: Kind, gaps: list[tuple[float, float]] | None = None
    ) -> None:
        self.symbol = symbol
        self.kind = kind
        self.ts: list[float] = []
        self.values: list[float] = []  # closes
        self.nb = 0  # points [0, nb) are bars with the extras below
        self.b_t0: list[float] = []  # time of the bar's first observation
        self.b_open: list[float] = []
        self.b_high: list[float] = []
        self.b_low: list[float] = []
        self.b_area: list[float] = []  # integral of the value over [t0, ts]
        self.gaps: list[tuple[float, float]] = gaps if gaps is not None else []
        self.edits = 0  # bumped by every change other than an append (caches watch it)
        # bumped by every change to the points other than an append, a new close of the
        # newest point and a removal (compaction, trimming): those a cache of results read
        # from the points up to a time sees in their number and the newest of them
        self.rewrites = 0
        # ... and every change but an append or one of the newest point (compaction and
        # trimming included): what `bot.engine.blocks` keeps of the older points stands
        # while this is unchanged
        self.reshapes = 0
        self.memo: dict[Any, Any] = {}  # such caches, owned by `bot.engine.functions`
        # for the checkpoint pages (`bot.engine.pages`): the earliest time of a point changed
        # since they were written other than by an append or a new close of the newest point,
        # and whether points were trimmed from the front
        self.dirty_from = -math.inf
        self.head_cut = False

    # ---- input ------------------------------------------------------------------------------

    def add(self, ts: float, value: float) -> str:
        """Take one observation; returns what was done with it (ADDED, LATE, ...)."""
        tss = self.ts
        n = len(tss)
        if not n or ts > tss[-1]:
            if n and ts // TICK_RESOLUTION == tss[-1] // TICK_RESOLUTION:
                self.edits += 1  # same second: the newer tick stands for it
                if n - 1 < self.nb:
                    self._bar_close(n - 1, ts, value)
                else:
                    tss[-1] = ts
                    self.values[-1] = value
                return ADDED
            tss.append(ts)
            self.values.append(value)
            return ADDED
        if ts < self.dirty_from:
            self.dirty_from = ts  # whatever follows changes (at most) a point of its bucket
        i = bisect_left(tss, ts)
        vals = self.values
        if tss[i] == ts:
            if vals[i] == value:
                return DUPLICATE
            vals[i] = value
            if i < self.nb:
                self._extend(i, value)
            self.edits += 1
            self.rewrites += 1
            self.reshapes += 1
            return CORRECTED
        if i < self.nb or (i == self.nb and i and tss[i - 1] // BAR == ts // BAR):
            return self._late_bar(i, ts, value)
        if tss[i] // TICK_RESOLUTION == ts // TICK_RESOLUTION:
            return ABSORBED  # the second's later close is already held
        self.edits += 1
        self.rewrites += 1
        self.reshapes += 1
        if i - 1 >= self.nb and tss[i - 1] // TICK_RESOLUTION == ts // TICK_RESOLUTION:
            tss[i - 1] = ts  # a later tick of that second: its new close
            vals[i - 1] = value
        else:
            tss.insert(i, ts)
            vals.insert(i, value)
        return LATE

    def _late_bar(self, i: int, ts: float, value: float) -> str:
        """A late observation among the bars (index i is the first point after it)."""
        b = ts // BAR
        if i < self.nb and self.ts[i] // BAR == b:  # inside bar i, before its close
            if self.b_low[i] <= value <= self.b_high[i]:
                return ABSORBED
            self._extend(i, value)
        elif i > 0 and self.ts[i - 1] // BAR == b:  # after bar i-1's close, same bucket
            self._bar_close(i - 1, ts, value)
        else:  # a bucket of its own: a bar of one observation
            self.ts.insert(i, ts)
            self.values.insert(i, value)
            self.b_t0.insert(i, ts)
            self.b_open.insert(i, value)
            self.b_high.insert(i, value)
            self.b_low.insert(i, value)
            self.b_area.insert(i, 0.0)
            self.nb += 1
        self.edits += 1
        self.rewrites += 1
        self.reshapes += 1
        return LATE

    def _extend(self, i: int, value: float) -> None:
        if value > self.b_high[i]:
            self.b_high[i] = value
        if value < self.b_low[i]:
            self.b_low[i] = value

    def _bar_close(self, i: int, ts: float, value: float) -> None:
        self.b_area[i] += self.values[i] * (ts - self.ts[i])
        self.ts[i] = ts
        self.values[i] = value
        self._extend(i, value)

    # ---- maintenance ------------------------------------------------------------------------

    def compact(self, before: float) -> None:
        """Turn the 1-second points older than `before` into 5-minute bars (open, high, low,
        close and time integral), so long windows hold bars, not every tick."""
        tss, vals, i = self.ts, self.values, self.nb
        j = bisect_left(tss, before, i)
        if j <= i:
            return
        t = tss[i - 1] if i else tss[i]  # the last bar may take in the first points
        if t < self.dirty_from:
            self.dirty_from = t
        buckets = [t // BAR for t in tss[i:j]]
        if len(set(buckets)) == j - i and (i == 0 or tss[i - 1] // BAR != buckets[0]):
            # one point per bucket (hourly or daily data): each is a bar of one observation
            seg = vals[i:j]
            self.b_t0 += tss[i:j]
            self.b_open += seg
            self.b_high += seg
            self.b_low += seg
            self.b_area += [0.0] * (j - i)
            self.nb = j
            return
        new_t: list[float] = []
        new_v: list[float] = []
        changed = False
        k = i
        while k < j:
            b = tss[k] // BAR
            m = k
            area = 0.0
            hi = lo = vals[k]
            while m + 1 < j and tss[m + 1] // BAR == b:
                area += vals[m] * (tss[m + 1] - tss[m])
                m += 1
                v = vals[m]
                if v > hi:
                    hi = v
                elif v < lo:
                    lo = v
            if k == i and i > 0 and tss[i - 1] // BAR == b:  # the last bar's bucket again
                p = i - 1
                self.b_area[p] += vals[p] * (tss[k] - tss[p]) + area
                tss[p], vals[p] = tss[m], vals[m]
                self._extend(p, hi)
                self._extend(p, lo)
                changed = True
            else:
                new_t.append(tss[m])
                new_v.append(vals[m])
                self.b_t0.append(tss[k])
                self.b_open.append(vals[k])
                self.b_high.append(hi)
                self.b_low.append(lo)
                self.b_area.append(area)
                changed = changed or m > k
            k = m + 1
        if changed:
            tss[i:j] = new_t
            vals[i:j] = new_v
            self.edits += 1
        self.nb = i + len(new_t)
        self.reshapes += 1  # points became bars

    def trim(self, before: float) -> None:
        """Forget points older than `before`, keeping one so `value_at(before)` still works."""
        i = bisect_right(self.ts, before) - 1
        if i > 0:
            del self.ts[:i]
            del self.values[:i]
            self.head_cut = True
            k = min(i, self.nb)
            if k:
                for lst in (self.b_t0, self.b_open, self.b_high, self.b_low, self.b_area):
                    del lst[:k]
                self.nb -= k
            self.edits += 1
            self.reshapes += 1

    def truncate_from(self, t0: float) -> float:
        """Drop every point from the one containing `t0` on (a derived series about to be
        recomputed from there). Returns the time the recomputation must start at."""
        tss = self.ts
        if not tss or tss[-1] < t0 // TICK_RESOLUTION * TICK_RESOLUTION:
            return t0 // TICK_RESOLUTION * TICK_RESOLUTION  # all before it: nothing to drop
        i = bisect_left(tss, t0)
        start = t0 // BAR * BAR if i < self.nb else t0 // TICK_RESOLUTION * TICK_RESOLUTION
        i = bisect_left(tss, start)
        if i < self.nb:
            start = min(start, tss[i] // BAR * BAR)
            i = bisect_left(tss, start)
        if i < len(tss):
            if start < self.dirty_from:
                self.dirty_from = start
            del tss[i:]
            del self.values[i:]
            if i < self.nb:
                for lst in (self.b_t0, self.b_open, self.b_high, self.b_low, self.b_area):
                    del lst[i:]
                self.nb = i
            self.edits += 1
            self.rewrites += 1
            self.reshapes += 1
        return start

    # ---- gaps ---------------------------------------------------------------------------------

    def known_through(self, t_obs: float, t: float) -> bool:
        """True unless missing input lies between an observation at `t_obs` and time `t`."""
        for g0, g1 in reversed(self.gaps):
            if g1 <= t_obs:
                return True
            if g0 < t:
                return False
        return True

    # ---- window functions; None means "not known" -----------------------------------------

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def last_ts(self) -> float | None:
        return self.ts[-1] if self.ts else None

    def value_at(self, t: float) -> float | None:
        """The value known at time t: the newest point at or before t, unless missing input
        lies between that point and t."""
        i = bisect_right(self.ts, t) - 1
        if i < 0 or (self.gaps and not self.known_through(self.ts[i], t)):
            return None
        return self.values[i]

    def ret(self, now: float, window: float) -> float | None:
        """Percent return from `now - window` to now."""
        a = self.value_at(now - window)
        b = self.value_at(now)
        if a is None or b is None:
            return None
        return (b / a - 1.0) * 100.0

    def change(self, now: float, window: float) -> float | None:
        """Absolute change from `now - window` to now, in the series' own units."""
        a = self.value_at(now - window)
        b = self.value_at(now)
        if a is None or b is None:
            return None
        return b - a

    def _window(self, now: float, window: float) -> tuple[int, int, int]:
        """(reference, first, end): the point giving the value at the window's start (-1 if
        none is known there) and the points observed in (now - window, now]."""
        a = now - window
        i = bisect_right(self.ts, a) - 1
        j = bisect_right(self.ts, now)
        if i >= 0 and self.gaps and not self.known_through(self.ts[i], a):
            return -1, i + 1, j
        return i, i + 1, j

    def high(self, now: float, window: float) -> float | None:
        """Highest value in the window; a bar counts with its high when its close is in it."""
        return self._extreme(now, window, self.b_high, max)

    def low(self, now: float, window: float) -> float | None:
        """Lowest value in the window; a bar counts with its low when its close is in it."""
        return self._extreme(now, window, self.b_low, min)

    def _extreme(
        self, now: float, window: float, bars: list[float], pick: Callable[..., float]
    ) -> float | None:
        r, k, j = self._window(now, window)
        return self.extreme_in(r, k, j, bars, pick)

    def extreme_in(
        self, r: int, k: int, j: int, bars: list[float], pick: Callable[..., float]
    ) -> float | None:
        """`_extreme` over the points a `_window` gave."""
        nb = self.nb
        found = [self.values[r]] if r >= 0 else []
        if k < min(j, nb):
            found.append(pick(bars[k : min(j, nb)]))
        if max(k, nb) < j:
            found.append(pick(self.values[max(k, nb) : j]))
        return pick(found) if found else None

    def mean(self, now: float, window: float) -> float | None:
        """Time-weighted mean over the window: each value counts for as long as it held.
        Spans of missing input count for nothing; so does time before the first value."""
        a = now - window
        r, k, j = self._window(now, window)
        tss, vals, nb = self.ts, self.values, self.nb
        total = area = 0.0
        t = a
        v = vals[r] if r >= 0 else None
        for m in range(k, j):
            t0 = self.b_t0[m] if m < nb else tss[m]
            if v is not None and t0 > t:
                d = self._known_span(t, t0)
                area += v * d
                total += d
            if m < nb and tss[m] > t0:  # the bar's own span, the part inside the window
                lo = t0 if t0 > a else a
                d = tss[m] - lo
                if d > 0:
                    area += self.b_area[m] * d / (tss[m] - t0)
                    total += d
            t = tss[m] if tss[m] > a else a
            v = vals[m]
        if v is not None and now > t:
            d = self._known_span(t, now)
            area += v * d
            total += d
        if total > 0:
            return area / total
        return v

    def _known_span(self, t0: float, t1: float) -> float:
        d = t1 - t0
        for g0, g1 in self.gaps:
            lo, hi = max(g0, t0), min(g1, t1)
            if hi > lo:
                d -= hi - lo
        return d

    def drawdown(self, now: float, window: float) -> float | None:
        """Percent below the window's high (0 when at the high)."""
        hi = self.high(now, window)
        cur = self.value_at(now)
        if hi is None or cur is None:
            return None
        return (1.0 - cur / hi) * 100.0

    def rally(self, now: float, window: float) -> float | None:
        """Percent above the window's low (0 when at the low)."""
        lo = self.low(now, window)
        cur = self.value_at(now)
        if lo is None or cur is None:
            return None
        return (cur / lo - 1.0) * 100.0

    def last_n(self, n: int) -> list[float] | None:
        """The last `n` observations, or None with fewer or with missing input among them."""
        if len(self.values) < n:
            return None
        if self.gaps and not self.known_through(self.ts[-n], self.ts[-1]):
            return None
        return self.values[-n:]

    def zscore(self, now: float, window: float, lookback: float) -> float | None:
        """The latest change over `window`, in standard deviations of the changes over
        `window` that preceded it back to back across `lookback` (percent for prices, the
        series' units otherwise). None with fewer than 10 reference changes or no variation.
        """
        n = int(lookback // window)
        if n < 11:
            return None
        pts = [self.value_at(now - k * window) for k in range(n + 1)]
        if any(p is None for p in pts):
            return None
        v: list[float] = pts  # type: ignore[assignment]
        if self.kind is Kind.PRICE:
            ch = [v[k] / v[k + 1] - 1.0 for k in range(n)]
        else:
            ch = [v[k] - v[k + 1] for k in range(n)]
        ref = ch[1:]
        mean = sum(ref) / len(ref)
        var = sum((c - mean) ** 2 for c in ref) / (len(ref) - 1)
        if var <= 0.0:
            return None
        return (ch[0] - mean) / math.sqrt(var)

    # ---- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "v": self.values,
            "bars": [self.b_t0, self.b_open, self.b_high, self.b_low, self.b_area],
        }

    def restore(self, data: dict[str, Any] | list[list[float]]) -> None:
        if isinstance(data, list):  # a checkpoint from before bars were kept
            self.ts, self.values = list(data[0]), list(data[1])
            bars: list[list[float]] = [[], [], [], [], []]
        else:
            self.ts, self.values = list(data["ts"]), list(data["v"])
            bars = data["bars"]
        self.b_t0, self.b_open, self.b_high, self.b_low, self.b_area = (list(b) for b in bars)
        self.nb = len(self.b_t0)
        self.dirty_from = -math.inf
        self.edits += 1
        self.rewrites += 1
        self.reshapes += 1
