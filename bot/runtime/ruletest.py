"""Rule tests, in the spirit of `promtool test rules`: replay known history through the rules
and check what must fire, and when, and what must stay silent.

    # rules/tests/default.toml
    [[test]]
    name = "the dash for cash of March 2020"
    files = ["../../../shared/data/history/episode-312.csv"]   # relative to this file
    fires = [{ rule = "liquidity_crisis", from = "2020-03-09", to = "2020-03-20" }]
    silent = ["crypto_crash"]

    [[test]]
    name = "inline input"
    input = '''
    ts,symbol,value
    2021-05-18T00:00:00Z,BTC/USD,43000
    '''

`fires`: at least one firing alert of the rule with its time in [from, to] (whole UTC days
when only dates are given), and none of that rule outside it; with `kind = "escalated"`
(or "reminder", "resolved") the same for messages of that kind instead. `silent`: no firing alert of
the rule at all. Tests run in memory (no Redis) on the same engine as live and replay.
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.config_types import format_validation_error
from bot.core.errors import StressbotError
from bot.core.models import Alert, AlertKind, iso_utc, parse_iso_utc
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet
from bot.runtime.config import Config
from connectors.history.file import Rejects, read_history


class RuleTestError(StressbotError):
    """A rule test file is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Fires(_Strict):
    rule: str
    from_: str = Field(alias="from")
    to: str
    kind: AlertKind = AlertKind.FIRING


class RuleTestSpec(_Strict):
    name: str
    files: list[str] = Field(default_factory=list)
    input: str | None = None
    fires: list[Fires] = Field(default_factory=list)
    silent: list[str] = Field(default_factory=list)


class RuleTestFile(_Strict):
    test: list[RuleTestSpec]


@dataclass
class RuleTestResult:
    name: str
    source: str
    problems: list[str] = field(default_factory=list)
    skipped: str = ""
    alerts: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems and not self.skipped


def _instant(text: str, end_of_day: bool) -> float:
    if "T" in text:
        return parse_iso_utc(text)
    return parse_iso_utc(f"{text}T00:00:00Z") + (86400.0 - 1.0 if end_of_day else 0.0)


def run_in_memory(
    rules: RuleSet,
    config: Config,
    files: Sequence[Path],
    rejects: Rejects,
    seen: Callable[[float], None] | None = None,
) -> list[Alert]:
    """Every alert the rules raise on `files` (merged by time), on the engine live and replay
    use, in memory: no Redis, no checkpoints. `seen(ts)` is called for every good row."""
    engine = Engine.from_config(rules, config.engine, config.sessions)
    alerts: list[Alert] = []
    for _, _, ts, sym, value in read_history(files, rejects):
        if seen is not None:
            seen(ts)
        engine.add(ts, sym, value)
        if engine.pending:
            alerts += engine.take_alerts()
    return alerts + engine.finish()


def load_tests(path: Path) -> list[RuleTestSpec]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RuleTestError(f"{path}: cannot read: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise RuleTestError(f"{path}: not valid TOML: {e}") from e
    try:
        return RuleTestFile.model_validate(data).test
    except ValidationError as e:
        raise RuleTestError(format_validation_error(path, e)) from e


def run_test(spec: RuleTestSpec, path: Path, rules: RuleSet, config: Config) -> RuleTestResult:
    res = RuleTestResult(spec.name, str(path))
    known = {r.id for r in rules.rules}
    for rid in [f.rule for f in spec.fires] + spec.silent:
        if rid not in known:
            res.problems.append(f"unknown rule '{rid}' (rules: {', '.join(sorted(known))})")
    if not spec.files and spec.input is None:
        res.problems.append("give `files` or `input`")
    if res.problems:
        return res
    files = [(path.parent / f).resolve() for f in spec.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        res.skipped = f"input not found: {', '.join(missing)}"
        return res
    with tempfile.TemporaryDirectory() as tmp:
        if spec.input is not None:
            inline = Path(tmp) / "input.csv"
            inline.write_text(
                "\n".join(ln.strip() for ln in spec.input.strip().splitlines()) + "\n"
            )
            files.append(inline)
        rejects = Rejects()
        alerts = run_in_memory(rules, config, files, rejects)
    firing = [a for a in alerts if a.kind is AlertKind.FIRING]
    res.alerts = len(firing)
    for reason, n in rejects.counts.items():
        res.problems.append(
            f"{n} input row(s) rejected ({reason}), e.g. {rejects.examples[reason][0]}"
        )
    for f in spec.fires:
        lo, hi = _instant(f.from_, False), _instant(f.to, True)
        mine = [a for a in alerts if a.rule == f.rule and a.kind is f.kind]
        inside = [a for a in mine if lo <= a.ts <= hi]
        outside = [iso_utc(a.ts) for a in mine if not lo <= a.ts <= hi]
        if not inside:
            seen = ", ".join(iso_utc(a.ts) for a in mine) or "never"
            what, did = ("fire", "fired") if f.kind is AlertKind.FIRING else ("send", "sent")
            kind = "" if f.kind is AlertKind.FIRING else f" '{f.kind.value}'"
            res.problems.append(
                f"'{f.rule}' should {what}{kind} between {f.from_} and {f.to}; it {did}: {seen}"
            )
        elif outside:
            what = "fired" if f.kind is AlertKind.FIRING else f"sent '{f.kind.value}'"
            res.problems.append(
                f"'{f.rule}' also {what} outside {f.from_}..{f.to}: {', '.join(outside)}"
            )
    for rid in spec.silent:
        fired = [iso_utc(a.ts) for a in firing if a.rule == rid]
        if fired:
            res.problems.append(f"'{rid}' should stay silent; it fired: {', '.join(fired)}")
    return res
