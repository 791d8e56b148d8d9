"""Derived series: the dollar index USDX from the FX legs and SOFR-IORB in basis points.

A derived series is a function of its inputs, stamped at its inputs' own times: USDX has a
point at every time one of its legs was observed, computed from each leg's value known then;
SOFR-IORB has one point per SOFR fixing, at the fixing's time, against the IORB in force on
SOFR's business day. When an input changes at time t (a new tick, a late one, a correction)
the derived series is recomputed from t on (`rebuild_usdx`, `rebuild_spread`), so a late or
re-delivered input gives exactly the derived points an in-order one would, and a duplicate,
which changes no input, changes nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping

from bot.engine.series import Series

HOUR = 3600.0
DAY = 86400.0

#: ICE US Dollar Index: USDX = 50.14348112 * prod(leg ** exponent).
USDX_CONSTANT = 50.14348112
USDX_LEGS: dict[str, float] = {
    "EUR/USD": -0.576,
    "USD/JPY": 0.136,
    "GBP/USD": -0.119,
    "USD/CAD": 0.091,
    "USD/SEK": 0.042,
    "USD/CHF": 0.036,
}
USDX_LEG_MAX_AGE = 5 * DAY  # an FX leg older than this counts as missing
SOFR_IORB_LAG = 12 * HOUR  # SOFR for day D is published at 08:00 New York on D+1
SPREAD_INPUTS = ("SOFR", "IORB")


def usdx(legs: Mapping[str, float]) -> float:
    """ICE dollar index over the legs given; exponents are renormalised when legs are missing."""
    scale = 1.0 if len(legs) == len(USDX_LEGS) else 1.0 / sum(abs(USDX_LEGS[k]) for k in legs)
    v = USDX_CONSTANT
    for k, x in legs.items():
        v *= x ** (USDX_LEGS[k] * scale)
    return v


def derived_inputs(inputs: Iterable[str]) -> frozenset[str]:
    """A rule on a derived series also reads the series it is derived from."""
    out: set[str] = set()
    inputs = set(inputs)
    if "USDX" in inputs:
        out.update(USDX_LEGS)
    if "SOFR-IORB" in inputs:
        out.update(SPREAD_INPUTS)
    return frozenset(out)


def rebuild_usdx(
    series: Mapping[str, Series], t0: float, legs: list[tuple[str, Series]] | None = None
) -> tuple[int, int, frozenset[str]]:
    """Recompute USDX from `t0` on (`legs`: the (name, series) of USDX_LEGS, if at hand).
    Returns (points computed, of which without every leg, the legs missing from the newest
    one)."""
    out = series["USDX"]
    if legs is None:
        legs = [(name, series[name]) for name in USDX_LEGS]
    if not out.ts or out.ts[-1] < t0 // 1.0:
        done = _usdx_in_order(out, legs, t0)
        if done is not None:
            return done
    start = out.truncate_from(t0)
    times: set[float] = set()
    for _, s in legs:
        tss = s.ts
        if tss and tss[-1] >= start:
            times.update(tss[bisect_left(tss, start) :])
    if not times:
        return 0, 0, frozenset()
    ordered = sorted(times) if len(times) > 1 else list(times)
    first = ordered[0]
    idx = [bisect_right(s.ts, first) - 1 for _, s in legs]
    partial = 0
    missing: frozenset[str] = frozenset()
    for t in ordered:
        present: dict[str, float] = {}
        oldest = t - USDX_LEG_MAX_AGE
        for n, (name, s) in enumerate(legs):
            k = idx[n]
            tss = s.ts
            last = len(tss) - 1
            while k < last and tss[k + 1] <= t:
                k += 1
            idx[n] = k
            if k >= 0 and tss[k] >= oldest and (not s.gaps or s.known_through(tss[k], t)):
                present[name] = s.values[k]
        if not present:
            continue
        if len(present) < len(USDX_LEGS):
            partial += 1
            missing = frozenset(USDX_LEGS.keys() - present.keys())
        else:
            missing = frozenset()
        out.add(t, usdx(present))
    return len(ordered), partial, missing


def _usdx_in_order(
    out: Series, legs: list[tuple[str, Series]], t0: float
) -> tuple[int, int, frozenset[str]] | None:
    """The common case: every leg changed since the last evaluation has one new point, all
    at the same time, after USDX's last point. None when it is not that case."""
    t = -math.inf
    for _, s in legs:  # the newest leg point: the time the new USDX point is stamped at
        if s.ts and s.ts[-1] > t:
            t = s.ts[-1]
    if t < t0:
        return 0, 0, _NONE
    oldest = t - USDX_LEG_MAX_AGE
    gaps = out.gaps
    present: dict[str, float] = {}
    for name, s in legs:
        tss = s.ts
        if tss:
            last = tss[-1]
            if last >= t0 and (last != t or (len(tss) > 1 and tss[-2] >= t0)):
                return None  # several new times: the general path
            if last >= oldest and (not gaps or s.known_through(last, t)):
                present[name] = s.values[-1]
    if not present:
        return 0, 0, _NONE
    out.add(t, usdx(present))
    if len(present) < len(USDX_LEGS):
        return 1, 1, frozenset(USDX_LEGS.keys() - present.keys())
    return 1, 0, _NONE


_NONE: frozenset[str] = frozenset()


def rebuild_spread(series: Mapping[str, Series], t0: float) -> int:
    """Recompute SOFR-IORB (bp) from `t0` on: one point per SOFR fixing. Returns the count."""
    out = series["SOFR-IORB"]
    sofr, iorb = series["SOFR"], series["IORB"]
    start = out.truncate_from(t0)
    n = 0
    for k in range(bisect_left(sofr.ts, start), len(sofr.ts)):
        t = sofr.ts[k]
        rate = iorb.value_at(t - SOFR_IORB_LAG)
        if rate is not None:
            out.add(t, round((sofr.values[k] - rate) * 100.0, 6))
            n += 1
    return n
