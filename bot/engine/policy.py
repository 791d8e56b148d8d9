"""Alert policy declared in rule files: escalation steps and inhibition, as written and as
compiled.

Escalation (per rule, ``[rule.escalate]``): an episode that becomes materially worse than the
message last sent for the rule sends a message saying so. "Worse" is declared, never guessed:

    [rule.escalate]
    value = "wick"      # a name in [rule.values]: worse when it is `factor` times the value
    factor = 1.5        # last sent (same sign, magnitude grown: 12% -> 18% deep)
    steps = [           # and/or severity steps: the highest whose `when` holds is the
      { when = 'max_drop("BTC/USD", "24h") >= 25', severity = "warning" },  # severity
    ]

Inhibition (top level, ``[[inhibit]]``, as Alertmanager's ``inhibit_rules``): while an alert
matching `source` fires, alerts matching `target` are held back and named in the source's
next message. A matcher is any of `rule` (ids, ``*`` globs as in ``rates_*``; feed-health
alerts are ``feed:NAME``), `pattern` and `severity`, each a value or a list; all given keys
must match, any value of a list may:

    [[inhibit]]
    source = { rule = "liquidity_crisis" }
    target = { pattern = ["crypto_crash", "rates_shock", "feed_health"] }
    why = "the dash for cash explains them"

Alertmanager's semantics (its `inhibit` package, pkg.go.dev/github.com/prometheus/
alertmanager/inhibit: an InhibitRule says that a class of source alerts inhibits
notifications for a class of target alerts, for targets "logically a subset of a
higher-level alert"), without its `equal` labels (our alerts have none to compare); an alert
never inhibits itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.core.models import Pattern, Severity
from bot.engine.rulelang import Compiled

#: Severities from least to most urgent: escalation only ever goes up this list.
SEVERITY_RANK = {Severity.INFO.value: 0, Severity.WARNING.value: 1, Severity.CRITICAL.value: 2}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepSpec(_Spec):
    when: str
    severity: Severity


class EscalateSpec(_Spec):
    """`[rule.escalate]` as written."""

    value: str | None = None
    factor: float = Field(default=1.5, gt=1.0)
    steps: list[StepSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> EscalateSpec:
        if self.value is None and not self.steps:
            raise ValueError("give `value` (with `factor`) or `steps`, or both")
        return self


def _as_list(v: object) -> object:
    return [v] if isinstance(v, str) else v


class MatcherSpec(_Spec):
    """One side of an `[[inhibit]]`: rule ids (globs), patterns and severities."""

    rule: list[str] = Field(default_factory=list)
    pattern: list[Pattern] = Field(default_factory=list)
    severity: list[Severity] = Field(default_factory=list)

    _lists = field_validator("rule", "pattern", "severity", mode="before")(_as_list)

    @model_validator(mode="after")
    def _something(self) -> MatcherSpec:
        if not (self.rule or self.pattern or self.severity):
            raise ValueError("give at least one of `rule`, `pattern` or `severity`")
        return self


class InhibitSpec(_Spec):
    """One `[[inhibit]]` table as written."""

    source: MatcherSpec
    target: MatcherSpec
    why: str = ""


@dataclass(frozen=True)
class Step:
    condition: Compiled
    severity: str


@dataclass(frozen=True)
class Escalation:
    value: str | None
    factor: float
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Matcher:
    rules: tuple[str, ...]
    patterns: frozenset[str]
    severities: frozenset[str]

    @classmethod
    def of(cls, spec: MatcherSpec) -> Matcher:
        return cls(
            tuple(spec.rule),
            frozenset(p.value for p in spec.pattern),
            frozenset(s.value for s in spec.severity),
        )

    def matches(self, rule: str, pattern: str, severity: str) -> bool:
        return (
            (not self.rules or any(fnmatchcase(rule, g) for g in self.rules))
            and (not self.patterns or pattern in self.patterns)
            and (not self.severities or severity in self.severities)
        )


@dataclass(frozen=True)
class Inhibit:
    source: Matcher
    target: Matcher
    where: str  # "FILE:LINE", for messages


def escalation_values(esc: Escalation | None) -> list[Compiled]:
    """The expressions an escalation reads (for the rule's inputs and lookback)."""
    return [] if esc is None else [s.condition for s in esc.steps]
