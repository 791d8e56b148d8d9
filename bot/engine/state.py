"""The engine's state records: a rule's life-cycle state and the engine's counters, and
how they (and infinite times) are written to and read from a snapshot."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any


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
    # alert policy (bot.engine.lifecycle); every field has a default, so a snapshot from
    # before them restores as "nothing sent with values yet"
    false_since: float | None = None  # firing, condition false since (keep_firing_for)
    fresh: bool = False  # an input changed since the condition was last true
    sent_values: dict[str, float | None] | None = None  # the values of the message last sent
    sent_severity: str | None = None  # and its severity
    checked: float | None = None  # last escalation check (event time)
    inhibited: bool = False  # this episode's message is held back by an inhibition


@dataclass
class EngineStats:
    ticks: int = 0
    late: int = 0
    duplicates: int = 0
    wild_prints: int = 0
    too_old: int = 0
    corrections: int = 0  # a new value for a time already held
    unchanged: int = 0  # late ticks that changed nothing (older than their second's close)
    gaps: int = 0  # spans of missing input recorded
    evaluations: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    absorbed: Counter[str] = field(default_factory=Counter)
    inhibited: Counter[str] = field(default_factory=Counter)  # messages held back, by rule
    usdx_partial: int = 0  # dollar index points computed without every leg


def num(x: float) -> float | None:
    """JSON has no infinities: they are stored as null."""
    return x if math.isfinite(x) else None


def inf_or(x: float | None) -> float:
    return -math.inf if x is None else float(x)


def stats_json(s: EngineStats) -> dict[str, Any]:
    d = asdict(s)
    d["alerts"] = dict(s.alerts)
    d["absorbed"] = dict(s.absorbed)
    d["inhibited"] = dict(s.inhibited)
    return d


def stats_from_json(d: dict[str, Any]) -> EngineStats:
    known = {f.name for f in fields(EngineStats)} - {"alerts", "absorbed", "inhibited"}
    s = EngineStats(**{k: v for k, v in d.items() if k in known})
    s.alerts = Counter(d.get("alerts", {}))
    s.absorbed = Counter(d.get("absorbed", {}))
    s.inhibited = Counter(d.get("inhibited", {}))
    return s
