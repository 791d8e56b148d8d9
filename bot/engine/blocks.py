"""Block summaries of a series' points, so that window scans read blocks, not every point.

With 1-second ticks a 24-hour window holds the last two hours as up to 7,200 points (and
bars before them), and `max_drop`, `high`, `low`, `drawdown` and `rally` re-read all of them
whenever the window moves: every second. Profiled on four symbols ticking every second with
the default rules, those scans were 80-90% of the engine's time. Here the points are cut
into blocks of `BLOCK` (by index), each summarised once as its highest value, lowest value
and deepest fall inside it; a window reads the blocks wholly inside it from their summaries
and only the points at its two ends one by one.

Exactness: the results are the very floats the plain scans give. The highest and lowest
values are maxima and minima of the same values. For the deepest fall, the fall to a point
from the running high before it is ``1 - low / max(peak, inside)``, which equals
``max(1 - low / peak, 1 - low / inside)`` exactly (a larger divisor never gives a smaller
rounded quotient), so a block's contribution is the larger of its own deepest fall and the
fall from the high before it to its lowest value.

Validity: a block's summary stands while the series' `reshapes` is unchanged (every change
but an append or one of the newest point bumps it) and the block lies before the newest
point, the one point that an append can still change (a later tick of the same second).
Blocks are summarised when a window first needs them.
"""

from __future__ import annotations

from bot.engine.series import Series

BLOCK = 32  # points per block
_KEY = "blocks"  # in Series.memo


class _Blocks:
    __slots__ = ("high", "low", "made", "reshapes", "worst")

    def __init__(self, reshapes: int) -> None:
        self.reshapes = reshapes
        self.made = bytearray()  # per block: 1 once summarised
        self.high: list[float] = []
        self.low: list[float] = []
        self.worst: list[float] = []


def drop_scan(
    s: Series, lo: int, hi: int, peak: float | None, worst: float
) -> tuple[float | None, float]:
    """The running high and the deepest fall (a fraction) after points [lo, hi), from
    `peak` and `worst` before them. A 5-minute bar falls from the best of the high before
    and its open to its low, then counts with its high."""
    vals, nb = s.values, s.nb
    b_open, b_high, b_low = s.b_open, s.b_high, s.b_low
    for m in range(lo, min(hi, nb)):
        o = b_open[m]
        top = o if peak is None or o > peak else peak
        d = 1.0 - b_low[m] / top
        worst = d if d > worst else worst
        h = b_high[m]
        peak = h if peak is None or h > peak else peak
    for m in range(max(lo, nb), hi):
        v = vals[m]
        if peak is None or v > peak:
            peak = v
        else:
            d = 1.0 - v / peak
            worst = d if d > worst else worst
    return peak, worst


def _extremes(s: Series, lo: int, hi: int) -> tuple[float, float]:
    """(highest, lowest) of points [lo, hi), not empty: bars with their high and low."""
    nb = s.nb
    his: list[float] = []
    los: list[float] = []
    if lo < nb:
        his.append(max(s.b_high[lo : min(hi, nb)]))
        los.append(min(s.b_low[lo : min(hi, nb)]))
    if hi > nb:
        seg = s.values[max(lo, nb) : hi]
        his.append(max(seg))
        los.append(min(seg))
    return max(his), min(los)


def _summaries(s: Series, first: int, last: int) -> _Blocks:
    """The blocks' summaries, those from `first` to `last` (exclusive) made if missing."""
    b = s.memo.get(_KEY)
    if not isinstance(b, _Blocks) or b.reshapes != s.reshapes:
        b = s.memo[_KEY] = _Blocks(s.reshapes)
    if len(b.made) < last:
        more = last - len(b.made)
        b.made += bytes(more)
        b.high += [0.0] * more
        b.low += [0.0] * more
        b.worst += [0.0] * more
    made = b.made
    for m in range(first, last):
        if not made[m]:
            made[m] = 1
            lo = m * BLOCK
            _, b.worst[m] = drop_scan(s, lo, lo + BLOCK, None, 0.0)
            b.high[m], b.low[m] = _extremes(s, lo, lo + BLOCK)
    return b


def _inner(s: Series, k: int, j: int) -> tuple[int, int]:
    """The blocks wholly inside points [k, j) and before the newest point."""
    first = -(-k // BLOCK)
    last = min(j, len(s.ts) - 1) // BLOCK
    return first, last


def scan_max_drop(s: Series, r: int, k: int, j: int) -> float | None:
    """`max_drop` by reading every point (short windows; the reference for the blocks)."""
    peak, worst = drop_scan(s, k, j, s.values[r] if r >= 0 else None, 0.0)
    return None if peak is None else worst * 100.0


def scan_high_low(s: Series, r: int, k: int, j: int) -> tuple[float | None, float | None]:
    """`high_low` by reading every point (short windows; the reference for the blocks)."""
    return s.extreme_in(r, k, j, s.b_high, max), s.extreme_in(r, k, j, s.b_low, min)


def max_drop(s: Series, r: int, k: int, j: int) -> float | None:
    """The deepest fall in percent over points [k, j) from the high before them, starting
    from the value of point `r` (none when -1): None when there is no value at all."""
    first, last = _inner(s, k, j)
    if last - first < 2:
        return scan_max_drop(s, r, k, j)
    peak = s.values[r] if r >= 0 else None
    b = _summaries(s, first, last)
    peak, worst = drop_scan(s, k, first * BLOCK, peak, 0.0)
    for m in range(first, last):
        h = b.high[m]
        w = b.worst[m]
        if peak is not None:
            d = 1.0 - b.low[m] / peak
            w = d if d > w else w
        worst = w if w > worst else worst
        peak = h if peak is None or h > peak else peak
    peak, worst = drop_scan(s, last * BLOCK, j, peak, worst)
    return None if peak is None else worst * 100.0


def high_low(s: Series, r: int, k: int, j: int) -> tuple[float | None, float | None]:
    """`Series.extreme_in` for the high and the low over the same window at once."""
    first, last = _inner(s, k, j)
    if last - first < 2:
        return scan_high_low(s, r, k, j)
    b = _summaries(s, first, last)
    his: list[float] = []
    los: list[float] = []
    if r >= 0:
        his.append(s.values[r])
        los.append(s.values[r])
    for lo, hi in ((k, first * BLOCK), (last * BLOCK, j)):
        if lo < hi:
            h, low = _extremes(s, lo, hi)
            his.append(h)
            los.append(low)
    his.append(max(b.high[first:last]))
    los.append(min(b.low[first:last]))
    return max(his), min(los)
