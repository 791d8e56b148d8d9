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


def rebuild_usdx(series: Mapping[str, Series], t0: float) -> tuple[int, int, frozenset[str]]:
    """Recompute USDX from `t0` on. Returns (points computed, of which without every leg,
    the legs missing from the newest one)."""
    out = series["USDX"]
    start = out.truncate_from(t0)
    legs = [(name, series[name]) for name in USDX_LEGS]
    times: set[float] = set()
    for _, s in legs:
        times.update(s.ts[bisect_left(s.ts, start) :])
    if not times:
        return 0, 0, frozenset()
    ordered = sorted(times)
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
            while k + 1 < len(tss) and tss[k + 1] <= t:
                k += 1
            idx[n] = k
            if k >= 0 and tss[k] >= oldest and (not s.gaps or s.known_through(tss[k], t)):
                present[name] = s.values[k]
        if not present:
            continue
        if len(present) < len(USDX_LEGS):
            partial += 1
        missing = frozenset(USDX_LEGS.keys() - present.keys())
        out.add(t, usdx(present))
    return len(ordered), partial, missing


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
