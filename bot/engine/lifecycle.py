"""What a rule's evaluation sends: the alert life cycle, escalation, reminders, hysteresis and
inhibition, all on event time (so replay, live and a restore from a snapshot agree).

Life cycle (as Prometheus alerting rules, with Alertmanager's policy on top)::

    inactive --true--> pending --true for `for`--> firing --false (see below)--> inactive
                         ^----------false-----------'         (resolved message)

While firing:
  - **Escalation** (``[rule.escalate]``): checked at most every ``ESCALATE_EVERY`` of event
    time. When the severity its steps give is above the one last sent, or its `value` is
    `factor` times the one last sent (same sign), a message says it is worse (old and new).
    An episode that starts inside the cooldown is absorbed silently only while it is not worse
    than the message last sent; when it is (at its start or later) it is escalated.
  - **Reminder** (`repeat_interval`): an announced alert whose condition holds is re-sent
    every interval, marked as a reminder (Alertmanager's ``repeat_interval``).
  - **Hysteresis** (`keep_firing_for`, Prometheus's: prometheus.io/docs/prometheus/latest/
    configuration/alerting_rules/ keeps an alert firing "for the specified duration after the
    firing condition was last met", against flapping and false resolutions): the condition
    false for less than this keeps the alert firing, so a value flickering around its
    threshold sends no resolve/fire pairs.
  - **No news is no resolution**: a firing alert is not resolved at an evaluation when none of
    its rule's inputs (derived series' legs included) got a new, late or corrected point since
    the condition was last true. Then nothing was observed that says the stress is over: the
    windows only slid past a market that did not print (a weekend, a holiday, a daily series
    not yet published, a feed that stopped). It resolves once an input prints and the
    condition is still false (and `keep_firing_for` has passed since it was first false on
    news). A rule reading a 24/7 market beside a daily one (BTC with equities) always has
    news, so its daily legs sliding over a weekend are covered by `keep_firing_for` instead.

Inhibition (``[[inhibit]]``, :mod:`bot.engine.policy`) is decided once per evaluation step,
after every rule was evaluated (`end_step`), on the rules' states then: so which of two rules
fires first in a step does not matter. A held-back target is named in its source's next
message; a target still firing when its inhibition ends is announced then (it was delayed,
not dropped), and one that ended meanwhile is never announced nor resolved. Alerts raised
outside the rules (feed health, `raise_external`) pass the same inhibition.

Chart points: an alert carries, per chart symbol, the points of the span its chart shows
(the rule's window, at most `CHART_SPAN` before the trigger), downsampled to `CHART_POINTS`
keeping every slice's extremes and the trigger.

Determinism: every field this decides on is in the rules' `RuleState` or in `snapshot()`.
"""

from __future__ import annotations

import math
import string
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import orjson

from bot.core.models import CHART_SPAN, Alert, AlertKind, iso_utc
from bot.engine.episodes import Episode, stress_values
from bot.engine.policy import SEVERITY_RANK, Inhibit
from bot.engine.rulefile import Rule
from bot.engine.rulelang import EvalContext
from bot.engine.series import Series
from bot.engine.state import EngineStats, RuleState

ESCALATE_EVERY = 60.0  # seconds of event time between escalation checks of a firing rule
CHART_POINTS = 300  # points per symbol an alert carries at most (a phone chart's width)
FOLD_NAMES = 12  # held-back alerts named in a message at most (then "and N more")


@dataclass
class Intent:
    """A message one rule's evaluation wants to send; `end_step` decides."""

    rule: Rule
    st: RuleState
    kind: AlertKind
    severity: str
    note: str = ""


def downsample(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points in time order: the first and the last (the trigger) and, in each
    of (limit - 2) // 2 equal slices of the rest, its lowest and highest, so every extreme a
    chart would show is kept."""
    n = len(points)
    if n <= limit:
        return points
    buckets = (limit - 2) // 2
    out = [points[0]]
    size = (n - 2) / buckets
    for b in range(buckets):
        lo, hi = 1 + int(b * size), 1 + int((b + 1) * size)
        if hi <= lo:
            continue
        i_min = i_max = lo
        for k in range(lo + 1, hi):
            v = points[k][1]
            if v < points[i_min][1]:
                i_min = k
            elif v > points[i_max][1]:
                i_max = k
        out.append(points[min(i_min, i_max)])
        if i_min != i_max:
            out.append(points[max(i_min, i_max)])
    out.append(points[-1])
    return out


def chart_points(s: Series, i: int, j: int) -> list[tuple[float, float]]:
    """Points [i, j) of a series for a chart. A 5-minute bar (older history) is its open,
    its low and high (at the bar's middle, in the order its direction suggests: a wick
    survives compaction) and its close; a 1-second point is itself."""
    nb = s.nb
    if i >= nb:
        return list(zip(s.ts[i:j], s.values[i:j], strict=True))
    out: list[tuple[float, float]] = []
    tss, vals = s.ts, s.values
    for k in range(i, min(j, nb)):
        t0, t1, o, c = s.b_t0[k], tss[k], s.b_open[k], vals[k]
        hi, lo = s.b_high[k], s.b_low[k]
        mid = (t0 + t1) / 2
        if t1 > t0:
            out.append((t0, o))
        for v in (lo, hi) if c >= o else (hi, lo):
            if v not in (o, c) and t0 < mid < t1:
                out.append((mid, v))
        out.append((t1, c))
    out += zip(tss[nb:j], vals[nb:j], strict=True)
    return out


def _fmt_of(summary: str, name: str) -> str:
    """The number format the summary uses for value `name` ('+.1f'), for old -> new notes."""
    for _lit, field, spec, _conv in string.Formatter().parse(summary):
        if field == name and spec:
            return spec
    return ".4g"


class Lifecycle:
    """The alert policy of one engine: decides, per evaluation, what is sent."""

    def __init__(
        self,
        rules: list[Rule],
        inhibits: list[Inhibit],
        states: dict[str, RuleState],
        ctx: EvalContext,
        series: dict[str, Series],
        pending: list[Alert],
    ) -> None:
        self.rules = rules
        self.inhibits = inhibits
        self.states = states
        self.ctx = ctx
        self.series = series
        self.pending = pending
        self.folded: dict[str, list[str]] = {}  # source rule -> alerts held back meanwhile
        self.held: dict[str, Alert] = {}  # outside alerts held back, by rule
        self._intents: list[Intent] = []  # of the current step; empty between steps
        self.episodes: list[Episode] = []  # the library 'how much like' compares with

    # ---- one rule, one evaluation ---------------------------------------------------------

    def evaluate(
        self, rule: Rule, st: RuleState, now: float, changed: bool, stats: EngineStats
    ) -> None:
        """`changed`: one of the rule's inputs got a point since the previous evaluation."""
        v = rule.condition.fn(self.ctx)
        st.last_eval = now
        st.last_value = v
        if v is None or (v is False and st.state == "inactive"):
            if changed and st.state == "firing":
                st.fresh = True
            return
        if v:
            if st.state == "inactive":
                st.state, st.pending_since = "pending", now
            if st.state == "pending":
                if now - (st.pending_since or now) >= rule.for_:
                    self._start_firing(rule, st, now, stats)
                return
            st.fresh, st.false_since = False, None
            self._still_firing(rule, st, now)
            return
        if st.state == "pending":
            st.state, st.pending_since = "inactive", None
            return
        if changed:
            st.fresh = True
        if not st.fresh:
            return  # nothing observed since it was last true: the windows only slid
        if st.false_since is None:
            st.false_since = now
        if now - st.false_since < rule.keep_firing_for:
            return
        was_alerted = st.alerted
        st.state, st.pending_since, st.firing_since, st.alerted = "inactive", None, None, False
        st.false_since, st.fresh, st.inhibited = None, False, False
        if was_alerted and rule.resolve:
            sev = st.sent_severity or rule.severity
            self._intents.append(Intent(rule, st, AlertKind.RESOLVED, sev))
        else:
            self.folded.pop(rule.id, None)  # no message left to name them in

    def _start_firing(self, rule: Rule, st: RuleState, now: float, stats: EngineStats) -> None:
        st.state, st.firing_since = "firing", now
        st.fresh, st.false_since, st.inhibited, st.checked = False, None, False, now
        if st.last_sent is None or now - st.last_sent >= rule.cooldown:
            self._intents.append(Intent(rule, st, AlertKind.FIRING, self._severity(rule)))
            return
        st.alerted = False
        sev, why = self._worse(rule, st)
        if why:
            self._intents.append(Intent(rule, st, AlertKind.ESCALATED, sev, why))
        else:
            st.absorbed += 1
            stats.absorbed[rule.id] += 1

    def _still_firing(self, rule: Rule, st: RuleState, now: float) -> None:
        if st.inhibited:
            if self._inhibitor(rule.id, rule.pattern, rule.severity) is None:
                self._intents.append(Intent(rule, st, AlertKind.FIRING, self._severity(rule)))
            return
        if rule.escalate is not None and (st.checked is None or now - st.checked >= ESCALATE_EVERY):
            st.checked = now
            sev, why = self._worse(rule, st)
            if why:
                self._intents.append(Intent(rule, st, AlertKind.ESCALATED, sev, why))
                return
        every = rule.repeat_interval
        if st.alerted and every and st.last_sent is not None and now - st.last_sent >= every:
            sev = st.sent_severity or rule.severity
            self._intents.append(Intent(rule, st, AlertKind.REMINDER, sev))

    def _severity(self, rule: Rule) -> str:
        """The rule's severity now: its own, or the highest of its escalation steps that
        holds."""
        sev = rule.severity
        if rule.escalate is not None:
            for step in rule.escalate.steps:
                if (
                    SEVERITY_RANK[step.severity] > SEVERITY_RANK[sev]
                    and step.condition.fn(self.ctx) is True
                ):
                    sev = step.severity
        return sev

    def _worse(self, rule: Rule, st: RuleState) -> tuple[str, str]:
        """(severity now, why it is worse than the message last sent, or "")."""
        esc = rule.escalate
        if esc is None or st.sent_values is None:
            return rule.severity, ""
        sev = self._severity(rule)
        was = st.sent_severity or rule.severity
        notes = []
        if SEVERITY_RANK[sev] > SEVERITY_RANK[was]:
            notes.append(f"severity {was} -> {sev}")
        if esc.value is not None:
            old = st.sent_values.get(esc.value)
            new = rule.values[esc.value].fn(self.ctx)
            if old and new is not None and float(new) / old >= esc.factor:
                f = _fmt_of(rule.summary, esc.value)
                notes.append(f"{esc.value} {format(old, f)} -> {format(float(new), f)}")
            elif not notes:
                return sev, ""
        return sev, "; ".join(notes)

    # ---- the step's messages ----------------------------------------------------------------

    def end_step(self, now: float, stats: EngineStats) -> None:
        """Send or hold back what the step's evaluations want to send, on the states after
        every rule was evaluated; release outside alerts whose inhibition ended."""
        intents, self._intents = self._intents, []
        if self.inhibits:
            send = []
            for it in intents:
                src = self._inhibitor(it.rule.id, it.rule.pattern, it.severity)
                if src is None:
                    send.append(it)
                else:
                    self._hold(it, src, now, stats)
            intents = send
        for it in intents:
            self._send(it, now, stats)
        for rid, a in list(self.held.items()):
            if self._inhibitor(a.rule, a.pattern, a.severity) is None:
                del self.held[rid]
                a.summary = f"{a.summary} (held back until {iso_utc(now)})"
                self.pending.append(a)

    def _inhibitor(self, rid: str, pattern: str, severity: str) -> str | None:
        """The firing rule whose inhibition holds back an alert of (rule, pattern, severity)."""
        for inh in self.inhibits:
            if not inh.target.matches(rid, pattern, severity):
                continue
            for r in self.rules:
                st = self.states[r.id]
                if (
                    st.state == "firing"
                    and r.id != rid
                    and inh.source.matches(r.id, r.pattern, st.sent_severity or r.severity)
                ):
                    return r.id
        return None

    def _fold(self, source: str, name: str) -> None:
        names = self.folded.setdefault(source, [])
        if name not in names:
            names.append(name)

    def _hold(self, it: Intent, src: str, now: float, stats: EngineStats) -> None:
        st, rid = it.st, it.rule.id
        stats.inhibited[rid] += 1
        if it.kind is AlertKind.RESOLVED:
            self._fold(src, f"{rid} (resolved)")
        elif it.kind is AlertKind.REMINDER:
            pass  # the source's own message says enough
        elif st.alerted:
            self._fold(src, f"{rid} (worse: {it.note})")
        else:
            if not st.inhibited:
                self._fold(src, f"{rid} ({iso_utc(now)})")
            st.inhibited = True

    def _send(self, it: Intent, now: float, stats: EngineStats) -> None:
        rule, st = it.rule, it.st
        values = rule.evaluate_values(self.ctx)
        if it.kind is not AlertKind.RESOLVED:
            st.last_sent, st.alerted, st.inhibited, st.checked = now, True, False, now
            st.sent_values, st.sent_severity = values, it.severity
            stats.alerts[rule.id] += 1
        self._raise(rule, now, it, values)

    def _raise(self, rule: Rule, now: float, it: Intent, values: dict[str, float | None]) -> None:
        summary = rule.render_summary(values)
        extra = stress_values(self.ctx, self.episodes)  # the gauge, the closest episode
        values = {**values, **{k: v for k, v in extra.items() if k not in values}}
        kind = it.kind
        if kind is AlertKind.RESOLVED:
            summary = f"Resolved: {summary}"
        elif kind is AlertKind.ESCALATED:
            summary = f"Worse ({it.note}): {summary}"
        elif kind is AlertKind.REMINDER:
            since = iso_utc(it.st.firing_since if it.st.firing_since is not None else now)
            summary = f"Still firing since {since}: {summary}"
        held = self.folded.pop(rule.id, None)
        if held:
            more = f" and {len(held) - FOLD_NAMES} more" if len(held) > FOLD_NAMES else ""
            summary += f"\nHeld back while this fires: {', '.join(held[:FOLD_NAMES])}{more}"
        window = rule.window
        span = min(window, CHART_SPAN)  # what the chart shows, at its full resolution
        chart = {}
        for sym in rule.chart_symbols:
            s = self.series[sym]
            i = max(bisect_right(s.ts, now - span) - 1, 0)
            j = bisect_right(s.ts, now)
            if j > i:
                chart[sym] = downsample(chart_points(s, i, j), CHART_POINTS)
        suffix = "" if kind is AlertKind.FIRING else f":{kind.value}"
        self.pending.append(
            Alert(
                id=f"{rule.id}@{iso_utc(now)}{suffix}",
                ts=now,
                rule=rule.id,
                pattern=rule.pattern,
                severity=it.severity,
                summary=summary,
                kind=kind,
                values=values,
                symbols=list(rule.chart_symbols),
                window=window,
                chart=chart,
            )
        )

    # ---- alerts from outside the rules ------------------------------------------------------

    def raise_external(self, alerts: list[Alert], stats: EngineStats) -> None:
        """Feed-health alerts (and any raised outside the rules) through the inhibitions: held
        back while a source fires, released when it stops; a recovery of one held back
        cancels both."""
        for a in alerts:
            if a.kind is AlertKind.RESOLVED and a.rule in self.held:
                del self.held[a.rule]
                stats.inhibited[a.rule] += 1
                continue
            src = self._inhibitor(a.rule, a.pattern, a.severity) if self.inhibits else None
            if src is None:
                self.pending.append(a)
                continue
            stats.inhibited[a.rule] += 1
            if a.kind is AlertKind.RESOLVED:
                self._fold(src, f"{a.rule} (resolved)")
            else:
                self.held[a.rule] = a
                self._fold(src, f"{a.rule} ({iso_utc(a.ts)})")

    # ---- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "folded": self.folded,
            "held": {k: [orjson.loads(a.dumps()), a.ts] for k, a in self.held.items()},
        }

    def restore(self, d: dict[str, Any]) -> None:
        self.folded = {k: list(v) for k, v in d.get("folded", {}).items()}
        held = {}
        for k, (raw, ts) in d.get("held", {}).items():
            a = Alert.loads(orjson.dumps(raw))
            a.ts = float(ts) if ts is not None and math.isfinite(float(ts)) else a.ts
            held[k] = a
        self.held = held
