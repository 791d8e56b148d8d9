"""A symbol's recent history and the window functions rules are written with.

Points are kept sorted by time in two parallel lists, so a window lookup is a bisect.
"Now" is always the engine's event clock, never the wall clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from bot.core.models import Kind

TICK_RESOLUTION = 1.0  # seconds: a series keeps the latest tick of each second


class Series:
    __slots__ = ("compacted_until", "kind", "symbol", "ts", "values")

    def __init__(self, symbol: str, kind: Kind) -> None:
        self.symbol = symbol
        self.kind = kind
        self.ts: list[float] = []
        self.values: list[float] = []
        self.compacted_until = -math.inf  # points before this are already bars

    def add(self, ts: float, value: float) -> str:
        """Add a point. Returns '' for an in-order point, else 'late' or 'duplicate'."""
        tss = self.ts
        if not tss or ts > tss[-1]:
            if tss and ts - tss[-1] < TICK_RESOLUTION and ts // 1.0 == tss[-1] // 1.0:
                tss[-1] = ts  # same second: the newer tick stands for it
                self.values[-1] = value
                return ""
            tss.append(ts)
            self.values.append(value)
            return ""
        i = bisect_left(tss, ts)
        if i < len(tss) and tss[i] == ts:
            self.values[i] = value  # same instant again: the newer value wins
            return "duplicate"
        tss.insert(i, ts)
        self.values.insert(i, value)
        return "late"

    def compact(self, before: float, resolution: float) -> None:
        """Keep only the last point of each `resolution`-second bucket among the points older
        than `before` (a bucket boundary), so long windows hold bars, not every tick."""
        if before <= self.compacted_until:
            return
        tss = self.ts
        i = bisect_left(tss, self.compacted_until)  # only what was not compacted before
        j = bisect_left(tss, before)
        self.compacted_until = before
        if j - i < 2:
            return
        vals = self.values
        keep_t: list[float] = []
        keep_v: list[float] = []
        for k in range(i, j):
            if k == j - 1 or tss[k + 1] // resolution != tss[k] // resolution:
                keep_t.append(tss[k])
                keep_v.append(vals[k])
        if len(keep_t) < j - i:
            tss[i:j] = keep_t
            vals[i:j] = keep_v

    def trim(self, before: float) -> None:
        """Forget points older than `before`, keeping one so `value_at(before)` still works."""
        i = bisect_right(self.ts, before) - 1
        if i > 0:
            del self.ts[:i]
            del self.values[:i]

    # ---- window functions; None means "not enough history" --------------------------------

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def last_ts(self) -> float | None:
        return self.ts[-1] if self.ts else None

    def value_at(self, t: float) -> float | None:
        """The value known at time t: the newest point at or before t."""
        i = bisect_right(self.ts, t) - 1
        return self.values[i] if i >= 0 else None

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

    def window_values(self, now: float, window: float) -> list[float]:
        """Values observed in (now - window, now], plus the value known at the window's start."""
        i = max(bisect_right(self.ts, now - window) - 1, 0)
        j = bisect_right(self.ts, now)
        return self.values[i:j]

    def high(self, now: float, window: float) -> float | None:
        v = self.window_values(now, window)
        return max(v) if v else None

    def low(self, now: float, window: float) -> float | None:
        v = self.window_values(now, window)
        return min(v) if v else None

    def mean(self, now: float, window: float) -> float | None:
        v = self.window_values(now, window)
        return sum(v) / len(v) if v else None

    def drawdown(self, now: float, window: float) -> float | None:
        """Percent below the window's high (0 when at the high)."""
        v = self.window_values(now, window)
        if not v:
            return None
        return (1.0 - v[-1] / max(v)) * 100.0

    def rally(self, now: float, window: float) -> float | None:
        """Percent above the window's low (0 when at the low)."""
        v = self.window_values(now, window)
        if not v:
            return None
        return (v[-1] / min(v) - 1.0) * 100.0

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

    def snapshot(self) -> list[list[float]]:
        return [self.ts, self.values]

    def restore(self, data: list[list[float]]) -> None:
        self.ts, self.values = list(data[0]), list(data[1])
