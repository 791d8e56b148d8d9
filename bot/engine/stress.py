"""The stress gauge: one number from 0 (calm) to 100 (a 312-style crisis) from cross-asset moves.

Method (docs/stress.md has the reasoning and the score's history on the real files):

1. Every market's move is measured in its own regime, with the `sigma` machinery of
   `bot.engine.functions` (`regime_fn`, cached per series in `Series.memo`): the change over
   1 day and over 5 days divided by that market's typical change of the same length over
   the year before (`LOOKBACK`). While less than a quarter of a year is held (a fresh start,
   a short replay) the long-run typical move in `TYPICAL` stands in (RMS of the 1- and 5-day
   changes on dev-2000-2018-daily.csv.gz, crypto on 2019-2021, SOFR-IORB outside the
   September 2019 repo spike). So 2022's rate volatility becomes the yardstick within a
   year, not a permanent alarm.
2. Direction: a fall is stress for equities, crypto and metals; a rise for the dollar, VIX
   and SOFR-IORB; Treasury yields count either way (a violent move is the stress, as in
   March 2020 when they first fell and then rose). Each leg is the stronger of its 1- and
   5-day moves in the stress direction; a component is the mean of its known legs (the
   dollar is the stronger of USDX and DXY), clipped to 0..`CAP` sigmas: calm or a move
   against the stress direction counts 0, one print cannot count more than `CAP`.
3. `rates_vol` is the 10-year yield's volatility over the last 30 days against its regime
   (the year before): `RATES_VOL_SCALE * log2(ratio)`, so twice the usual volatility counts
   2.5 sigmas.
3b. `dollar_sessions` is the session split of the dollar, the sell-America signature (the
   `session_dollar` rule's pattern, a different direction of stress than the dollar bid):
   the dollar's percent returns of the last 5 days summed over the Asian and European
   sessions minus the New York ones (the engine's `session_ret` sums, sessions in local time
   from the config), negative when it is sold abroad and not at home. It counts
   `-split / SPLIT_TYPICAL` sigmas while the dollar is down over the Asian plus European
   sessions and the 10-year yield up over the same 5 days, 0 otherwise (a dollar bought
   everywhere, most in New York, is the dash for cash; a dollar sold abroad while Treasuries
   rally is not foreigners leaving US assets). The yardstick is a documented typical value,
   not a trailing regime: the split is a sum over session windows, not a change of one
   series, so `regime_fn` cannot measure it.
   Unknown unless every session held at least `SPLIT_MIN_POINTS` dollar points in at least
   `SPLIT_MIN_SESSIONS` of its windows: a daily close is one point, so daily-only files (and
   a missing `asia`, `europe` or `us` session in the config) leave it unknown.
4. The composite Z is the weighted mean of the known components (`WEIGHTS`). A component with
   no data (daily markets before their first close, no BTC before 2011, no SOFR before
   2018) is dropped and the others are reweighted; the reading lists what is missing and the
   share of the weight known (`coverage`). Fewer than `MIN_COVERAGE` known: no score. A
   component with a `donor` (`dollar_sessions` took its 0.05 from `funding`) gives its weight
   back to the donor while unknown, so data without intraday FX reads exactly as it did
   before the split existed.
5. Score = 100 * (1 - exp(-(Z / Z_SCALE) ** 2)): 0 at Z = 0, about 19 at Z = 1, 56 at 2, 84
   at 3 and 96 at 4. Each component's contribution is its share of Z times the score.

Everything here reads the engine's series at `c.now` only (points at or before it), so the
score at an instant is the same in live and replay and a duplicated tick changes nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

from bot.engine.functions import DAY, Fn, regime_fn

LOOKBACK = 365 * DAY
WINDOWS = (DAY, 5 * DAY)
CAP = 5.0  # sigmas: no component counts more than this
Z_SCALE = 2.2  # composite Z at which the score is 100 * (1 - 1/e) = 63
MIN_COVERAGE = 0.5  # share of the weight that must be known for a score (a file start)
RATES_VOL_WINDOW = 30 * DAY
RATES_VOL_SCALE = 2.5

#: Typical 1-day and 5-day moves (percent for prices, bp for yields and spreads).
TYPICAL: dict[str, tuple[float, float]] = {
    "SPX": (1.0, 2.1),
    "NDX": (1.5, 3.0),
    "N225": (1.2, 2.6),
    "BTC/USD": (4.0, 10.0),
    "XAU/USD": (0.9, 2.0),
    "XAG/USD": (1.65, 3.5),
    "US2Y": (4.3, 9.3),
    "US10Y": (4.8, 10.5),
    "US30Y": (4.3, 9.5),
    "USDX": (0.42, 0.94),
    "DXY": (0.42, 0.94),
    "VIX": (6.0, 12.7),
    "SOFR-IORB": (1.5, 3.0),
}


@dataclass(frozen=True)
class Component:
    name: str
    weight: float
    label: str
    legs: tuple[tuple[str, ...], ...]  # each leg: one symbol, or alternatives (the stronger)
    sign: int  # +1: a rise is stress, -1: a fall, 0: either way
    donor: str | None = None  # the component its weight was taken from: gets it back while
    # this one is unknown (so data without it reads exactly as before it existed)


#: The components and their weights (they sum to 1; docs/stress.md gives the reasoning).
COMPONENTS: tuple[Component, ...] = (
    Component("equities", 0.20, "S&P 500, Nasdaq-100, Nikkei falling",
              (("SPX",), ("NDX",), ("N225",)), -1),
    Component("crypto", 0.10, "BTC falling", (("BTC/USD",),), -1),
    Component("metals", 0.10, "gold and silver falling", (("XAU/USD",), ("XAG/USD",)), -1),
    Component("rates", 0.125, "Treasury yields moving violently",
              (("US2Y",), ("US10Y",), ("US30Y",)), 0),
    Component("rates_vol", 0.075, "10-year yield volatility against its year", (("US10Y",),), 0),
    Component("dollar", 0.15, "the dollar bid (USDX or DXY)", (("USDX", "DXY"),), 1),
    Component("dollar_sessions", 0.05, "dollar sold in Asian/European hours, held in NY, yields up",
              (("USDX", "DXY"),), -1, "funding"),
    Component("vix", 0.15, "VIX rising", (("VIX",),), 1),
    Component("funding", 0.05, "SOFR-IORB widening", (("SOFR-IORB",),), 1),
)  # fmt: skip
WEIGHTS = {c.name: c.weight for c in COMPONENTS}
COMPONENT_NAMES = tuple(WEIGHTS)
SYMBOLS = tuple(dict.fromkeys(s for c in COMPONENTS for leg in c.legs for s in leg))
#: History the gauge reads, per symbol (the engine keeps at least this much).
STRESS_LOOKBACK = {s: LOOKBACK + 2 * max(WINDOWS) + DAY for s in SYMBOLS}


def _sigmas() -> dict[tuple[str, float], Fn]:
    out = {}
    for sym in SYMBOLS:
        for i, w in enumerate(WINDOWS):
            out[sym, w] = regime_fn(sym, w, LOOKBACK, True, TYPICAL[sym][i])
    return out


_SIGMA = _sigmas()
_VOL_NOW = regime_fn("US10Y", DAY, RATES_VOL_WINDOW + DAY, False)
_VOL_YEAR = regime_fn("US10Y", DAY, LOOKBACK, False, TYPICAL["US10Y"][0])


def sigma(c: Any, sym: str, window: float) -> float | None:
    """The move of `sym` over `window` in sigmas of its regime (shared with the rules' cache)."""
    v = _SIGMA[sym, window](c)
    return None if v is None else float(v)


@dataclass
class ComponentReading:
    name: str
    z: float | None  # sigmas in the stress direction, 0..CAP; None: no data
    weight: float  # the documented weight
    share: float  # the weight after reweighting over the known components
    contribution: float  # points of the score
    legs: dict[str, float | None] = field(default_factory=dict)  # symbol -> signed sigma


@dataclass
class StressReading:
    ts: float
    score: float | None
    z: float | None
    coverage: float  # share of the documented weight that is known
    components: list[ComponentReading]
    missing: list[str]

    def component(self, name: str) -> ComponentReading:
        return next(c for c in self.components if c.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "score": _r(self.score),
            "z": _r(self.z),
            "coverage": round(self.coverage, 3),
            "missing": self.missing,
            "components": {
                c.name: {
                    "z": _r(c.z),
                    "weight": c.weight,
                    "share": round(c.share, 4),
                    "contribution": round(c.contribution, 2),
                    "legs": {k: _r(v) for k, v in c.legs.items()},
                }
                for c in self.components
            },
        }


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def _leg(c: Any, leg: tuple[str, ...], sign: int) -> tuple[float | None, float | None]:
    """(stress-direction sigmas, the signed sigma behind it) of one leg."""
    best: float | None = None
    signed: float | None = None
    for sym in leg:
        for w in WINDOWS:
            v = sigma(c, sym, w)
            if v is None:
                continue
            d = abs(v) if sign == 0 else sign * v
            if best is None or d > best:
                best, signed = d, v
    return best, signed


def _rates_vol(c: Any) -> tuple[float | None, float | None]:
    now, year = _VOL_NOW(c), _VOL_YEAR(c)
    if now is None or year is None or now <= 0 or year <= 0:
        return None, None
    ratio = float(now) / float(year)
    return RATES_VOL_SCALE * math.log2(ratio), ratio


#: The session split (`dollar_sessions`): sessions by their config names, the days summed, the
#: points a session must hold for its move to be intraday, the sessions of each kind that
#: must be so measured, and the typical size of the split (percent: the RMS of
#: asia + europe - us over 5 days of USDX on dev-2019-2021, read every 6 hours).
SPLIT_SESSIONS = ("asia", "europe", "us")
SPLIT_WINDOW = 5 * DAY
SPLIT_MIN_POINTS = 2
SPLIT_MIN_SESSIONS = 2
SPLIT_TYPICAL = 0.53


def _intraday(c: Any, series: Any, session: str) -> bool:
    """True when at least `SPLIT_MIN_SESSIONS` of `session`'s windows begun in the last
    `SPLIT_WINDOW` hold `SPLIT_MIN_POINTS` points of `series` (a daily close is one)."""
    ts = series.ts
    measured = 0
    for s, e in c.sessions.windows(session, c.now, SPLIT_WINDOW):
        if bisect_right(ts, min(e, c.now)) - bisect_left(ts, s) >= SPLIT_MIN_POINTS:
            measured += 1
    return measured >= SPLIT_MIN_SESSIONS


def _session_split(c: Any) -> tuple[float | None, dict[str, float | None]]:
    """(stress sigmas, legs) of `dollar_sessions`: the dollar's 5-day return summed over the
    Asian and European sessions minus the New York one, negative read as stress in units of
    `SPLIT_TYPICAL` while the dollar is down over the Asian and European sessions and the
    10-year yield up over the same 5 days, 0 otherwise; None without intraday dollar points
    in every session (a daily-only file) or without the 10-year's 5-day change."""
    legs: dict[str, float | None] = {"asia+europe %": None, "asia+europe-us %": None}
    legs["US10Y 5d bp"] = None
    sessions = getattr(c, "sessions", None)
    if sessions is None or any(n not in sessions.sessions for n in SPLIT_SESSIONS):
        return None, legs
    for sym in ("USDX", "DXY"):
        series = c.series.get(sym)
        if series is None or not all(_intraday(c, series, n) for n in SPLIT_SESSIONS):
            continue
        parts = [sessions.sum(series, n, c.now, SPLIT_WINDOW) for n in SPLIT_SESSIONS]
        if any(p is None for p in parts):
            continue
        asia, europe, us = (float(p) for p in parts)
        split = asia + europe - us
        legs["asia+europe %"] = asia + europe
        legs["asia+europe-us %"] = split
        y10 = c.series.get("US10Y")
        dy = None if y10 is None else y10.change(c.now, SPLIT_WINDOW)
        if dy is None:
            return None, legs
        legs["US10Y 5d bp"] = dy * 100.0
        sold_abroad = asia + europe < 0.0
        return (-split / SPLIT_TYPICAL if sold_abroad and dy > 0 else 0.0), legs
    return None, legs


def transform(z: float) -> float:
    """The composite Z (weighted mean sigmas) mapped to 0..100."""
    return 100.0 * (1.0 - math.exp(-((max(z, 0.0) / Z_SCALE) ** 2)))


def read_stress(c: Any) -> StressReading:
    """The gauge at `c.now` from `c.series` (an `EvalContext` or anything with both)."""
    comps: list[ComponentReading] = []
    for comp in COMPONENTS:
        legs: dict[str, float | None] = {}
        if comp.name == "rates_vol":
            z, ratio = _rates_vol(c)
            legs["US10Y vol ratio"] = ratio
        elif comp.name == "dollar_sessions":
            z, legs = _session_split(c)
        else:
            vals = []
            for leg in comp.legs:
                d, signed = _leg(c, leg, comp.sign)
                legs["|".join(leg)] = signed
                if d is not None:
                    vals.append(d)
            z = sum(vals) / len(vals) if vals else None
        if z is not None:
            z = min(max(z, 0.0), CAP)
        comps.append(ComponentReading(comp.name, z, comp.weight, 0.0, 0.0, legs))
    by_name = {x.name: x for x in comps}
    weight = {x.name: x.weight for x in comps}
    for comp in COMPONENTS:  # an unknown component's weight goes back to its donor
        if comp.donor and by_name[comp.name].z is None and by_name[comp.donor].z is not None:
            weight[comp.donor] += weight.pop(comp.name)
    known = [x for x in comps if x.z is not None]
    coverage = sum(weight[x.name] for x in known)
    missing = [x.name for x in comps if x.z is None]
    if coverage < MIN_COVERAGE - 1e-9:
        return StressReading(c.now, None, None, coverage, comps, missing)
    total = 0.0
    for x in known:
        x.share = weight[x.name] / coverage
        total += x.share * (x.z or 0.0)
    score = transform(total)
    for x in known:
        x.contribution = score * x.share * (x.z or 0.0) / total if total > 0 else 0.0
    return StressReading(c.now, score, total, coverage, comps, missing)


def stress_fn(component: str | None) -> Fn:
    """The rule language's `stress()` (the score) or `stress_component(NAME)` (its z in
    sigmas, 0..CAP)."""
    if component is None:
        return lambda c: read_stress(c).score

    def one(c: Any) -> float | None:
        return read_stress(c).component(component).z

    return one


STRESS_FUNCTIONS = ("stress", "stress_component")


def stress_call(name: str, args: list[str]) -> tuple[Fn, list[str], dict[str, float]]:
    """Compile `stress()` / `stress_component(NAME)`: (function, symbols read, lookback).
    Raises ValueError with the message for the rule file."""
    if name == "stress":
        if args:
            raise ValueError("stress() takes no arguments")
        fn = stress_fn(None)
    else:
        if len(args) != 1:
            raise ValueError("stress_component() takes one component name")
        if args[0] not in WEIGHTS:
            known = ", ".join(COMPONENT_NAMES)
            raise ValueError(f"unknown stress component '{args[0]}' (known: {known})")
        fn = stress_fn(args[0])
    return fn, list(SYMBOLS), dict(STRESS_LOOKBACK)


class _Ctx:
    """An evaluation context at a chosen instant over an engine's series."""

    __slots__ = ("now", "series", "sessions")

    def __init__(self, series: Any, sessions: Any, now: float) -> None:
        self.series, self.sessions, self.now = series, sessions, now


def read_engine(engine: Any, at: float | None = None) -> StressReading:
    """The gauge of an `Engine` at `at` (default: its clock), without touching its own
    evaluation context."""
    now = engine.clock if at is None else at
    return read_stress(_Ctx(engine.series, engine.sessions, now))


class StressSampler:
    """The score every `every` seconds of event time over a run: call it after each tick
    given to the engine (and once after `finish`); an instant is read once the clock has
    passed it, so every tick of that instant is in. Appends to `points`."""

    def __init__(self, every: float = 3600.0) -> None:
        self.every = every
        self.next: float | None = None
        self.points: list[StressReading] = []

    def __call__(self, engine: Any, final: bool = False) -> None:
        clock = engine.clock
        if clock == -math.inf:
            return
        if self.next is None:
            self.next = (clock // self.every + 1) * self.every
        while self.next < clock or (final and self.next <= clock):
            self.points.append(read_engine(engine, self.next))
            self.next += self.every
