"""The data that flows through stressbot: ticks in, alerts out.

Inside the process a time is a float of seconds since the Unix epoch, always UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

import orjson


class Kind(Enum):
    """How a series moves: prices in percent, yields and rates in basis points."""

    PRICE = "price"
    RATE = "rate"  # quoted in percent; changes are measured in basis points
    SPREAD_BP = "spread_bp"  # already in basis points


#: Canonical symbols a feed may deliver, with their kind.
INPUT_SYMBOLS: dict[str, Kind] = {
    "BTC/USD": Kind.PRICE,
    "XAU/USD": Kind.PRICE,
    "XAG/USD": Kind.PRICE,
    "EUR/USD": Kind.PRICE,
    "USD/JPY": Kind.PRICE,
    "GBP/USD": Kind.PRICE,
    "USD/CAD": Kind.PRICE,
    "USD/CHF": Kind.PRICE,
    "USD/SEK": Kind.PRICE,
    "DXY": Kind.PRICE,
    "US2Y": Kind.RATE,
    "US10Y": Kind.RATE,
    "US30Y": Kind.RATE,
    "SOFR": Kind.RATE,
    "IORB": Kind.RATE,
    "SPX": Kind.PRICE,
    "NDX": Kind.PRICE,
    "N225": Kind.PRICE,
    "VIX": Kind.PRICE,
}

#: Series the engine computes from the inputs as they arrive.
DERIVED_SYMBOLS: dict[str, Kind] = {
    "USDX": Kind.PRICE,  # ICE dollar index formula over the FX legs
    "SOFR-IORB": Kind.SPREAD_BP,
}

SYMBOLS: dict[str, Kind] = {**INPUT_SYMBOLS, **DERIVED_SYMBOLS}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Pattern(StrEnum):
    LIQUIDITY_CRISIS = "liquidity_crisis"
    CRYPTO_CRASH = "crypto_crash"
    SESSION_DOLLAR = "session_dollar"
    FUNDING_STRESS = "funding_stress"
    RATES_SHOCK = "rates_shock"
    FEED_HEALTH = "feed_health"
    CUSTOM = "custom"


#: History an alert's chart shows before its trigger, and so the span of the points it
#: carries: a rule's window can include a year of lookback (its regime), which on a phone
#: would flatten the move the alert is about.
CHART_SPAN = 10 * 86400.0


@dataclass(slots=True)
class Tick:
    """One observation: `value` of `symbol` known at `ts` (epoch seconds, UTC)."""

    ts: float
    symbol: str
    value: float
    source: str = ""


class AlertKind(StrEnum):
    """What a message says about its rule. Notifiers that know only firing and resolved may
    show every kind but RESOLVED as a firing alert: ESCALATED and REMINDER are still firing."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ESCALATED = "escalated"  # the episode got materially worse than the message last sent
    REMINDER = "reminder"  # still firing: re-sent every `repeat_interval`

    @classmethod
    def parse(cls, text: object) -> AlertKind:
        """A kind from the outbox; one this version does not know is read as FIRING (an
        alert written by a newer version is still delivered, never dropped)."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.FIRING


@dataclass(slots=True)
class Alert:
    """A message for the outbox. `id` is deterministic, so a replayed alert is recognisable."""

    id: str
    ts: float  # event time at which the rule fired (or resolved)
    rule: str
    pattern: str
    severity: str
    summary: str
    kind: AlertKind = AlertKind.FIRING
    values: dict[str, float | None] = field(default_factory=dict)
    symbols: list[str] = field(default_factory=list)  # the series behind it, for charts
    window: float = 0.0  # seconds of history the rule looks at
    # (ts, value) points of each chart symbol over the window or `CHART_SPAN` if shorter,
    # so a chart can be drawn from the alert alone, whenever and wherever it is delivered
    chart: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": iso_utc(self.ts),
            "rule": self.rule,
            "pattern": self.pattern,
            "severity": self.severity,
            "kind": self.kind.value,
            "summary": self.summary,
            "values": self.values,
            "symbols": self.symbols,
            "window": self.window,
            "chart": self.chart,
        }

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def loads(cls, raw: bytes | str) -> Alert:
        d = orjson.loads(raw)
        return cls(
            id=d["id"],
            ts=parse_iso_utc(d["ts"]),
            rule=d["rule"],
            pattern=d["pattern"],
            severity=d["severity"],
            kind=AlertKind.parse(d.get("kind", "firing")),
            summary=d["summary"],
            values=d.get("values", {}),
            symbols=d.get("symbols", []),
            window=float(d.get("window", 0.0)),
            chart={
                s: [(float(t), float(v)) for t, v in pts] for s, pts in d.get("chart", {}).items()
            },
        )


def iso_utc(ts: float) -> str:
    """Epoch seconds to ISO-8601 UTC with a Z suffix, second precision."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> float:
    """ISO-8601 to epoch seconds. A time without an offset is taken as UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True)
class PageWrite:
    """What a checkpoint writes of its series pages (`bot.engine.pages`), or (read back)
    what the store holds.

    `base`: the revision the pages in the store must have for this write to apply on them
    (None: it replaces them all); `rev`: their revision after it; `put`: page name -> page;
    `drop`: names of pages deleted."""

    base: str | None
    rev: str
    put: dict[str, bytes] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
