"""The rule engine: ticks in, alerts out, all on event time.

The engine is a pure in-memory state machine; it does no I/O. Runners (replay, live) feed it
ticks, take the alerts it raises, and persist its `snapshot()` with the input position.

Event time: the clock is the newest tick time seen. When a tick arrives with a newer time,
the rules are evaluated at the current clock first (every tick of that instant is in), then
the clock moves on. So replay and live see the same thing, and `for` and cooldowns mean the
same in both.

Rule life cycle (as in Prometheus alerting rules)::

    inactive --condition true--> pending --true for `for`--> firing --false--> inactive
                                   ^----------false-----------'      (resolved message)

A firing alert is sent unless the rule sent one less than `cooldown` ago; an episode that
starts inside the cooldown is absorbed silently (and not resolved either). An unknown
condition (missing data) changes nothing.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bot.core.models import INPUT_SYMBOLS, SYMBOLS, Alert, AlertKind, Kind, iso_utc
from bot.engine.config import EngineConfig, SessionConfig
from bot.engine.rulefile import Rule, RuleSet
from bot.engine.rulelang import EvalContext
from bot.engine.series import TICK_RESOLUTION, Series
from bot.engine.sessions import Session, SessionReturns, sessions_from_config

log = logging.getLogger(__name__)

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
WILD_PRINT_GAP = 300.0  # only ticks this close together can be wild prints; bars are not
REEVALUATE_EVERY = HOUR  # a rule whose inputs are quiet is still re-evaluated this often
COMPACT_AFTER = 2 * HOUR  # history older than this is kept as 5-minute bars
COMPACT_RESOLUTION = 300.0
MAINTAIN_EVERY = HOUR  # trim and compact the series this often (event time),
MAINTAIN_GROWTH = 256  # once this many ticks arrived since the last time
MIN_RETENTION = 2 * DAY  # history kept for symbols no rule looks at (status, charts)
SERIES_KEEP = 8 * DAY  # history the store keeps for charts and /status


def usdx(legs: dict[str, float]) -> float:
    """ICE dollar index over the legs given; exponents are renormalised when legs are missing."""
    scale = 1.0 if len(legs) == len(USDX_LEGS) else 1.0 / sum(abs(USDX_LEGS[k]) for k in legs)
    v = USDX_CONSTANT
    for k, x in legs.items():
        v *= x ** (USDX_LEGS[k] * scale)
    return v


@dataclass
class RuleState:
    state: str = "inactive"  # inactive | pending | firing
    pending_since: float | None = None
    firing_since: float | None = None
    last_sent: float | None = None
    alerted: bool = False  # the current firing episode produced an alert
    absorbed: int = 0  # episodes that fell inside a cooldown
    last_eval: float | None = None
    last_value: bool | None = None


@dataclass
class EngineStats:
    ticks: int = 0
    late: int = 0
    duplicates: int = 0
    wild_prints: int = 0
    too_old: int = 0
    evaluations: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    absorbed: Counter[str] = field(default_factory=Counter)
    usdx_partial: int = 0  # dollar index points computed without every leg


class Engine:
    def __init__(
        self,
        rules: RuleSet,
        sessions: dict[str, Session],
        *,
        wild_print_pct: float = 15.0,
        evaluate_every: float = 1.0,
    ) -> None:
        self.rules = rules.rules
        self.series: dict[str, Series] = {s: Series(s, k) for s, k in SYMBOLS.items()}
        self.sessions = SessionReturns(sessions)
        self.ctx = EvalContext(self.series, self.sessions)
        self.clock = -math.inf
        self.first_clock = -math.inf  # event time of the first tick ever taken
        self.evaluate_from = -math.inf  # replay --from: earlier instants only warm the windows
        self.states: dict[str, RuleState] = {r.id: RuleState() for r in self.rules}
        self.stats = EngineStats()
        self.ticks = 0  # kept outside `stats` for the hot path; see `snapshot`
        self.wild_print_pct = wild_print_pct
        self.evaluate_every = evaluate_every  # seconds of event time between evaluations
        self._last_eval = -math.inf
        self._held: dict[str, tuple[float, float, str]] = {}  # symbol -> unconfirmed tick
        self._dirty: set[str] = set()
        self.pending: list[Alert] = []  # raised and not yet taken by the runner
        self._last_trim = -math.inf
        self._last_forget = -math.inf
        self._ticks_at_trim = 0
        self._usdx_missing: frozenset[str] | None = None
        lookback = rules.lookback
        self._retention = {s: max(lookback.get(s, 0.0) + DAY, MIN_RETENTION) for s in SYMBOLS}
        self._inputs = {r.id: frozenset(r.inputs) | _derived_inputs(r.inputs) for r in self.rules}
        prices = frozenset(s for s, k in INPUT_SYMBOLS.items() if k is Kind.PRICE)
        self._holdable = prices if wild_print_pct else frozenset()

    # ---- input ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, rules: RuleSet, engine: EngineConfig, sessions: Mapping[str, SessionConfig]
    ) -> Engine:
        """The engine as live, replay and rule tests all build it: one place, one behaviour."""
        return cls(
            rules,
            sessions_from_config(sessions),
            wild_print_pct=engine.wild_print_pct,
            evaluate_every=engine.evaluate_every,
        )

    def add(self, ts: float, symbol: str, value: float, source: str = "") -> None:
        """Take one tick. Evaluates the rules first if it moves the clock forward."""
        if ts > self.clock:
            if self.clock == -math.inf:
                self.first_clock = ts
            self._step()
            self.clock = ts
        self.ticks += 1
        series = self.series[symbol]
        tss = series.ts
        if symbol in self._holdable and (
            symbol in self._held
            or (
                tss
                and ts - tss[-1] < WILD_PRINT_GAP
                and abs(value / series.values[-1] - 1.0) * 100.0 > self.wild_print_pct
            )
        ):
            self._hold(series, ts, value, source)
            return
        if tss and ts > tss[-1]:  # the common case, inlined
            if ts - tss[-1] < TICK_RESOLUTION and ts // 1.0 == tss[-1] // 1.0:
                tss[-1] = ts  # same second: the newer tick stands for it
                series.values[-1] = value
            else:
                tss.append(ts)
                series.values.append(value)
            self._dirty.add(symbol)
        else:
            self._put(series, ts, value)

    def _hold(self, series: Series, ts: float, value: float, source: str) -> None:
        """A single wild print is held until the next tick confirms or refutes it."""
        symbol = series.symbol
        held = self._held.pop(symbol, None)
        if held is not None:
            if abs(value / held[1] - 1.0) * 100.0 <= self.wild_print_pct:
                self._put(series, held[0], held[1])  # confirmed: the market really moved
            else:
                self.stats.wild_prints += 1
                log.info(
                    "dropped a wild print of %s: %s at %s from %s (not confirmed)",
                    symbol,
                    held[1],
                    iso_utc(held[0]),
                    held[2] or "?",
                )
        last = series.last()
        if (
            last is not None
            and series.ts
            and ts - series.ts[-1] < WILD_PRINT_GAP
            and abs(value / last - 1.0) * 100.0 > self.wild_print_pct
        ):
            self._held[symbol] = (ts, value, source)
        else:
            self._put(series, ts, value)

    def _put(self, series: Series, ts: float, value: float) -> None:
        if ts < self.clock - self._retention[series.symbol]:
            self.stats.too_old += 1  # older than any window looks: it would only be trimmed
            return
        how = series.add(ts, value)
        if how == "late":
            self.stats.late += 1
        elif how == "duplicate":
            self.stats.duplicates += 1
        self._dirty.add(series.symbol)

    def finish(self) -> list[Alert]:
        """Evaluate at the final clock (end of input) and return every alert not yet taken."""
        if self._dirty:
            self._step(force=True)
        return self.take_alerts()

    def advance_to(self, now: float) -> None:
        """Move the clock to `now` without a tick (live: time passes while markets are quiet)."""
        if now > self.clock:
            self._step()
            self.clock = now

    def queue(self, alerts: list[Alert]) -> None:
        """Queue alerts raised outside the rules (feed health), committed like any other."""
        self.pending.extend(alerts)

    def take_alerts(self) -> list[Alert]:
        """Hand over the raised alerts (the `pending` list is emptied in place)."""
        out = self.pending[:]
        self.pending.clear()
        return out

    # ---- evaluation -----------------------------------------------------------------------

    def _step(self, force: bool = False) -> None:
        """Evaluate at the current clock: at most once per `evaluate_every` of event time
        (changes wait in the dirty set), so a busy live feed is not evaluated per tick."""
        now = self.clock
        if now == -math.inf or (now - self._last_eval < self.evaluate_every and not force):
            return
        self._last_eval = now
        dirty = self._dirty
        if dirty:
            self._update_derived(now, dirty)
        ctx = self.ctx
        ctx.now = now
        if now >= self.evaluate_from:
            states, inputs = self.states, self._inputs
            for rule in self.rules:
                st = states[rule.id]
                if (
                    st.state == "inactive"
                    and st.last_eval is not None
                    and now - st.last_eval < REEVALUATE_EVERY
                    and dirty.isdisjoint(inputs[rule.id])
                    and not rule.condition.uses_clock
                ):
                    continue
                self._evaluate(rule, st, now)
        self._dirty = set()
        if now - self._last_trim >= MAINTAIN_EVERY and (
            self.ticks - self._ticks_at_trim >= MAINTAIN_GROWTH
        ):
            self._trim(now)

    def _evaluate(self, rule: Rule, st: RuleState, now: float) -> None:
        self.stats.evaluations += 1
        v = rule.condition.fn(self.ctx)
        st.last_eval = now
        st.last_value = v
        if v is None or (v is False and st.state == "inactive"):
            return
        if v:
            if st.state == "inactive":
                st.state, st.pending_since = "pending", now
            if st.state == "pending" and now - (st.pending_since or now) >= rule.for_:
                st.state, st.firing_since = "firing", now
                if st.last_sent is None or now - st.last_sent >= rule.cooldown:
                    st.last_sent, st.alerted = now, True
                    self._raise(rule, now, AlertKind.FIRING)
                else:
                    st.alerted = False
                    st.absorbed += 1
                    self.stats.absorbed[rule.id] += 1
        elif st.state != "inactive":
            was_alerted = st.state == "firing" and st.alerted
            st.state, st.pending_since, st.firing_since, st.alerted = "inactive", None, None, False
            if was_alerted and rule.resolve:
                self._raise(rule, now, AlertKind.RESOLVED)

    def _raise(self, rule: Rule, now: float, kind: AlertKind) -> None:
        values = rule.evaluate_values(self.ctx)
        summary = rule.render_summary(values)
        if kind is AlertKind.RESOLVED:
            summary = f"Resolved: {summary}"
        else:
            self.stats.alerts[rule.id] += 1
        window = rule.window
        chart = {}
        for sym in rule.chart_symbols:
            s = self.series[sym]
            i = max(bisect_right(s.ts, now - window) - 1, 0)
            j = bisect_right(s.ts, now)
            if j > i:
                chart[sym] = list(zip(s.ts[i:j], s.values[i:j], strict=True))
        self.pending.append(
            Alert(
                id=f"{rule.id}@{iso_utc(now)}"
                + (":resolved" if kind is AlertKind.RESOLVED else ""),
                ts=now,
                rule=rule.id,
                pattern=rule.pattern,
                severity=rule.severity,
                summary=summary,
                kind=kind,
                values=values,
                symbols=list(rule.chart_symbols),
                window=window,
                chart=chart,
            )
        )

    def _update_derived(self, now: float, dirty: set[str]) -> None:
        if not dirty.isdisjoint(USDX_LEGS):
            oldest = now - USDX_LEG_MAX_AGE
            legs = {
                leg: s.values[-1]
                for leg in USDX_LEGS
                if (s := self.series[leg]).ts and s.ts[-1] >= oldest
            }
            if legs:
                missing = frozenset(USDX_LEGS) - legs.keys()
                if missing != self._usdx_missing:
                    self._usdx_missing = missing
                    if missing:
                        log.info(
                            "dollar index USDX from %d of 6 legs (missing %s), "
                            "weights renormalised, at %s",
                            len(legs),
                            ", ".join(sorted(missing)),
                            iso_utc(now),
                        )
                    else:
                        log.info("dollar index USDX has all 6 legs again at %s", iso_utc(now))
                if missing:
                    self.stats.usdx_partial += 1
                self.series["USDX"].add(now, usdx(legs))
                dirty.add("USDX")
        if "SOFR" in dirty:
            sofr = self.series["SOFR"].last()
            iorb = self.series["IORB"].value_at(now - SOFR_IORB_LAG)
            if sofr is not None and iorb is not None:
                self.series["SOFR-IORB"].add(now, round((sofr - iorb) * 100.0, 6))
                dirty.add("SOFR-IORB")

    def _trim(self, now: float) -> None:
        self._last_trim = now
        self._ticks_at_trim = self.ticks
        bars_before = (now - COMPACT_AFTER) // COMPACT_RESOLUTION * COMPACT_RESOLUTION
        for sym, s in self.series.items():
            if s.ts:
                s.trim(now - self._retention[sym])
                s.compact(bars_before, COMPACT_RESOLUTION)
        if now - self._last_forget >= DAY:
            self._last_forget = now
            self.sessions.forget_before(now - max(self._retention.values()) - 2 * DAY)

    # ---- state for the store ---------------------------------------------------------------

    def chart_retention(self) -> float:
        """How far back the store keeps series for charts and /status: at least 8 days, and
        a day more than the longest window any rule looks at."""
        return max(SERIES_KEEP, max((r.window for r in self.rules), default=0.0) + DAY)

    def rule_states(self) -> dict[str, dict[str, Any]]:
        by_id = {r.id: r for r in self.rules}
        return {
            rid: {**asdict(st), "pattern": by_id[rid].pattern, "severity": by_id[rid].severity}
            for rid, st in self.states.items()
        }

    def latest(self) -> dict[str, tuple[float, float]]:
        return {sym: (s.ts[-1], s.values[-1]) for sym, s in self.series.items() if s.ts}

    def points_since(
        self, since: dict[str, float], not_before: float = -math.inf
    ) -> dict[str, list[tuple[float, float]]]:
        """Points newer than `since[symbol]` and not before `not_before`, for every symbol."""
        out = {}
        for sym, s in self.series.items():
            t0 = max(since.get(sym, -math.inf), not_before - 1e-9)
            if s.ts and s.ts[-1] > t0:
                i = bisect_right(s.ts, t0)
                out[sym] = list(zip(s.ts[i:], s.values[i:], strict=True))
        return out

    def snapshot(self, extra: dict[str, Any] | None = None) -> bytes:
        return orjson.dumps(
            {
                "clock": self.clock if self.clock > -math.inf else None,
                "first_clock": self.first_clock if self.first_clock > -math.inf else None,
                "evaluate_from": None if self.evaluate_from == -math.inf else self.evaluate_from,
                "series": {k: s.snapshot() for k, s in self.series.items() if s.ts},
                "states": {k: asdict(v) for k, v in self.states.items()},
                "held": self._held,
                "dirty": sorted(self._dirty),
                "stats": {**_stats_json(self.stats), "ticks": self.ticks},
                "usdx_missing": None if self._usdx_missing is None else sorted(self._usdx_missing),
                "extra": extra or {},
            }
        )

    def restore(self, raw: bytes) -> dict[str, Any]:
        """Restore a snapshot; returns the `extra` the runner stored with it."""
        d = orjson.loads(raw)
        self.clock = d["clock"] if d["clock"] is not None else -math.inf
        fc = d.get("first_clock")
        self.first_clock = fc if fc is not None else -math.inf
        ef = d.get("evaluate_from")
        self.evaluate_from = -math.inf if ef is None else ef
        for k, data in d["series"].items():
            if k in self.series:
                self.series[k].restore(data)
        for k, v in d["states"].items():
            if k in self.states:  # a rule removed since the snapshot is forgotten
                self.states[k] = RuleState(**v)
        self._held = {k: (v[0], v[1], v[2]) for k, v in d["held"].items()}
        self._dirty = set(d["dirty"])
        self.stats = _stats_from_json(d["stats"])
        self.ticks = self.stats.ticks
        um = d.get("usdx_missing")
        self._usdx_missing = None if um is None else frozenset(um)
        extra: dict[str, Any] = d.get("extra", {})
        return extra


def _derived_inputs(inputs: Iterable[str]) -> frozenset[str]:
    """A rule on a derived series also reads the series it is derived from."""
    out: set[str] = set()
    if "USDX" in inputs:
        out.update(USDX_LEGS)
    if "SOFR-IORB" in inputs:
        out.update(("SOFR", "IORB"))
    return frozenset(out)


def _stats_json(s: EngineStats) -> dict[str, Any]:
    d = asdict(s)
    d["alerts"] = dict(s.alerts)
    d["absorbed"] = dict(s.absorbed)
    return d


def _stats_from_json(d: dict[str, Any]) -> EngineStats:
    s = EngineStats(**{k: v for k, v in d.items() if k not in ("alerts", "absorbed")})
    s.alerts = Counter(d.get("alerts", {}))
    s.absorbed = Counter(d.get("absorbed", {}))
    return s
