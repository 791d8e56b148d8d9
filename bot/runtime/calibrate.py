"""Calibration: how often each rule speaks on real history, and whether it speaks when it should.

    stressbot rules calibrate FILE... [--episodes rules/tests/episodes.toml] [--markdown]

Each history file is replayed on its own through the rules, in memory (the engine that live
and replay use). For each rule the report gives its firing alerts, the UTC days with at least
one of them (alert-days; resolved messages do not count), and the alert-days a year outside
the documented stress episodes: the noise a desk would live with. For each episode inside a
file's span it says whether the expected rules fired in their window (and when first) and
whether the rules that must stay silent did.

The episode library is a TOML file of `[[episode]]` tables:

    [[episode]]
    name = "repo_2019"
    from = "2019-09-16"                  # the stress window (whole UTC days)
    to = "2019-10-31"
    why = "SOFR printed 5.25% on 2019-09-17 against IOER 2.10%"
    expect = [{ rule = "funding_stress", from = "2019-09-16", to = "2019-09-30" }]
    silent = ["liquidity_crisis"]

Alerts inside any episode's window are not counted as noise, whatever the rule.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError

from bot.core.config_types import Strict, format_validation_error
from bot.core.errors import StressbotError
from bot.core.models import Alert, AlertKind, iso_utc, parse_iso_utc
from bot.engine.rulefile import RuleSet
from bot.runtime.config import Config
from bot.runtime.ruletest import run_in_memory
from connectors.history.file import Rejects

YEAR = 365.25 * 86400.0


class CalibrationError(StressbotError):
    """The episode file is invalid."""


class Expect(Strict):
    rule: str
    from_: str = Field(alias="from")
    to: str


class Episode(Strict):
    name: str
    from_: str = Field(alias="from")
    to: str
    why: str
    expect: list[Expect] = Field(default_factory=list)
    silent: list[str] = Field(default_factory=list)

    def span(self) -> tuple[float, float]:
        return day_start(self.from_), day_end(self.to)


class EpisodeFile(Strict):
    episode: list[Episode]


def day_start(text: str) -> float:
    return parse_iso_utc(text if "T" in text else f"{text}T00:00:00Z")


def day_end(text: str) -> float:
    return parse_iso_utc(text) if "T" in text else day_start(text) + 86400.0 - 1.0


def load_episodes(path: Path) -> list[Episode]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return EpisodeFile.model_validate(data).episode
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: cannot read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise CalibrationError(f"{path}: not valid TOML: {e}") from e
    except ValidationError as e:
        raise CalibrationError(format_validation_error(path, e)) from e


@dataclass
class RuleFigures:
    alerts: int = 0
    days: set[str] = field(default_factory=set)
    days_outside: set[str] = field(default_factory=set)


@dataclass
class EpisodeCheck:
    episode: Episode
    lines: list[str]
    ok: bool


@dataclass
class FileReport:
    path: Path
    first: float
    last: float
    rows: int
    rules: dict[str, RuleFigures]
    all_days_outside: set[str]
    episodes: list[EpisodeCheck]

    @property
    def years(self) -> float:
        return max((self.last - self.first) / YEAR, 1 / 365.25)

    def per_year(self, days: set[str]) -> float:
        return len(days) / self.years


def calibrate_file(
    path: Path, rules: RuleSet, config: Config, episodes: Sequence[Episode]
) -> FileReport:
    """Replay one file and measure every rule against the episodes."""
    rejects = Rejects()
    span = _Span()
    alerts = [
        a
        for a in run_in_memory(rules, config, [path], rejects, span.see)
        if a.kind is AlertKind.FIRING
    ]
    windows = [e.span() for e in episodes]
    figures = {r.id: RuleFigures() for r in rules.rules}
    outside: set[str] = set()
    for a in alerts:
        day = _day(a.ts)
        f = figures.setdefault(a.rule, RuleFigures())
        f.alerts += 1
        f.days.add(day)
        if not any(lo <= a.ts <= hi for lo, hi in windows):
            f.days_outside.add(day)
            outside.add(day)
    checks = [
        _check(e, alerts)
        for e in episodes
        if e.span()[0] <= span.last and e.span()[1] >= span.first
    ]
    return FileReport(path, span.first, span.last, span.rows, figures, outside, checks)


class _Span:
    def __init__(self) -> None:
        self.first = float("inf")
        self.last = float("-inf")
        self.rows = 0

    def see(self, ts: float) -> None:
        self.rows += 1
        if ts < self.first:
            self.first = ts
        if ts > self.last:
            self.last = ts


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _check(e: Episode, alerts: list[Alert]) -> EpisodeCheck:
    lines: list[str] = []
    ok = True
    for x in e.expect:
        lo, hi = day_start(x.from_), day_end(x.to)
        hits = [a.ts for a in alerts if a.rule == x.rule and lo <= a.ts <= hi]
        if hits:
            lines.append(f"{x.rule} fired {iso_utc(min(hits))} (window {x.from_}..{x.to})")
        else:
            ok = False
            lines.append(f"{x.rule} MISSED (window {x.from_}..{x.to})")
    lo, hi = e.span()
    for rule in e.silent:
        wrong = [a.ts for a in alerts if a.rule == rule and lo <= a.ts <= hi]
        if wrong:
            ok = False
            lines.append(f"{rule} should stay silent; fired {iso_utc(min(wrong))}")
        else:
            lines.append(f"{rule} silent, as it should be")
    return EpisodeCheck(e, lines, ok)


def format_report(report: FileReport, markdown: bool = False) -> str:
    """The report of one file, as plain text or as a Markdown table for the README."""
    head = (
        f"{report.path.name}: {_day(report.first)} .. {_day(report.last)} "
        f"({report.years:.1f} years, {report.rows:,} rows)"
    )
    rows = [
        (rid, str(f.alerts), str(len(f.days)), f"{report.per_year(f.days_outside):.2f}")
        for rid, f in sorted(report.rules.items())
    ]
    total_days = set().union(*(f.days for f in report.rules.values())) if report.rules else set()
    rows.append(
        (
            "all rules",
            str(sum(f.alerts for f in report.rules.values())),
            str(len(total_days)),
            f"{report.per_year(report.all_days_outside):.2f}",
        )
    )
    cols = ("rule", "alerts", "alert-days", "outside episodes /yr")
    out = [head, ""]
    if markdown:
        out.append("| " + " | ".join(cols) + " |")
        out.append("|---|---:|---:|---:|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        out.append(fmt.format(*cols))
        out += [fmt.format(*r) for r in rows]
    if report.episodes:
        out.append("")
        for c in report.episodes:
            e = c.episode
            bullet, sub = ("- ", "  - ") if markdown else ("", "      ")
            out.append(f"{bullet}{'ok ' if c.ok else 'BAD'} {e.name} ({e.from_}..{e.to})")
            out += [f"{sub}{line}" for line in c.lines]
    return "\n".join(out)
