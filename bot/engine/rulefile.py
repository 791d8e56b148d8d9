"""Rule files: `rules/*.toml`, each holding `[[rule]]` tables a trader can read and edit.

    [[rule]]
    id = "funding_stress"
    pattern = "funding_stress"
    severity = "warning"
    when = 'last("SOFR-IORB") > 5'
    for = "1d"
    cooldown = "7d"
    summary = "SOFR is {spread:+.0f} bp over IORB"
    [rule.values]
    spread = 'last("SOFR-IORB")'

Alert policy keys of a rule (see README "Rules"): ``keep_firing_for`` (hysteresis: a
condition false for less than this keeps the alert firing), ``repeat_interval`` (a reminder
while it fires, default off) and ``[rule.escalate]``; and top-level ``[[inhibit]]`` tables
(:mod:`bot.engine.policy`).

Every problem is reported as ``FILE:LINE: rule 'ID': what is wrong: `offending text```.

Loading cannot fail other than with :class:`RuleError`: a file that cannot be read (deleted
while being loaded, no permission), is larger than :data:`MAX_RULE_FILE_BYTES`, is not UTF-8,
is not TOML, or whose parsing or compiling runs out of stack (an expression nested hundreds
deep: ``RecursionError``) or memory is reported as a problem with the file and the reason, so
the live bot keeps its last good rules and `stressbot rules check` prints a message, never a
traceback.
"""

from __future__ import annotations

import hashlib
import re
import string
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.config_types import Duration
from bot.core.errors import RuleError
from bot.core.models import Pattern, Severity
from bot.engine.policy import (
    EscalateSpec,
    Escalation,
    Inhibit,
    InhibitSpec,
    Matcher,
    Step,
    escalation_values,
)
from bot.engine.rulelang import Compiled, EvalContext, ExprError, T, compile_expr

#: A rule file larger than this is refused unread (the shipped files are a few KiB each).
MAX_RULE_FILE_BYTES = 256 * 1024


class RuleSpec(BaseModel):
    """One `[[rule]]` table as written in the file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    pattern: Pattern
    severity: Severity
    when: str
    for_: Duration = Field(alias="for")
    cooldown: Duration
    summary: str
    values: dict[str, str] = Field(default_factory=dict)
    symbols: list[str] | None = None  # what a chart of the alert shows (default: the inputs)
    resolve: bool = True  # also send a message when the condition clears
    enabled: bool = True
    description: str = ""
    # a condition false for less than this keeps the alert firing (no resolve/fire pairs)
    keep_firing_for: Duration = Field(default=0.0, ge=0.0)
    # while firing, the alert is sent again (as a reminder) this often; default off
    repeat_interval: Duration | None = Field(default=None, gt=0.0)
    escalate: EscalateSpec | None = None

    @field_validator("values")
    @classmethod
    def _value_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"value name {name!r} must be a plain word such as 'btc_5d'")
        return v


@dataclass
class Rule:
    """A loaded, compiled rule."""

    id: str
    pattern: str
    severity: str
    for_: float
    cooldown: float
    summary: str
    resolve: bool
    description: str
    condition: Compiled
    values: dict[str, Compiled]
    chart_symbols: list[str]
    source: str  # "FILE:LINE", for messages
    keep_firing_for: float = 0.0
    repeat_interval: float | None = None
    escalate: Escalation | None = None

    @property
    def expressions(self) -> list[Compiled]:
        return [self.condition, *self.values.values(), *escalation_values(self.escalate)]

    @property
    def inputs(self) -> set[str]:
        out: set[str] = set()
        for c in self.expressions:
            out.update(c.symbols)
        return out

    @property
    def window(self) -> float:
        """The longest window the rule looks at: how much history its chart should show."""
        return max(self.condition.lookback.values(), default=86400.0)

    def evaluate_values(self, ctx: EvalContext) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, c in self.values.items():
            v = c.fn(ctx)
            out[name] = None if v is None else round(float(v), 6)
        return out

    def render_summary(self, values: dict[str, float | None]) -> str:
        # Safe: load_rules admits only plain value names (no attribute or index access).
        return self.summary.format(**{k: _NA if v is None else v for k, v in values.items()})


class _NotAvailable:
    def __format__(self, spec: str) -> str:
        return "n/a"


_NA = _NotAvailable()


@dataclass
class RuleSet:
    rules: list[Rule]
    fingerprint: str  # changes whenever any rule file's content changes
    files: list[Path]
    inhibits: list[Inhibit] = field(default_factory=list)

    @property
    def lookback(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.rules:
            for c in r.expressions:
                for s, w in c.lookback.items():
                    out[s] = max(out.get(s, 0.0), w)
        return out


def default_rules_dir() -> Path:
    """The shipped rules: ./rules when present, else the one beside the installed package."""
    here = Path("rules")
    if here.is_dir() and any(here.glob("*.toml")):
        return here
    return Path(__file__).resolve().parent.parent / "rules"


def load_rules(directory: Path | str, sessions: Iterable[str]) -> RuleSet:
    """Load and compile every `*.toml` in `directory`. Raises RuleError listing all problems."""
    d = Path(directory)
    if not d.is_dir():
        raise RuleError([f"{d}: no such rules folder"])
    files = sorted(d.glob("*.toml"))
    if not files:
        raise RuleError([f"{d}: no rule files (*.toml) in this folder"])
    sessions = list(sessions)
    problems: list[str] = []
    rules: list[Rule] = []
    inhibits: list[Inhibit] = []
    disabled: list[str] = []  # ids of `enabled = false` rules: an inhibit may name them
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for f in files:
        text = _read(f, problems)
        if text is None:
            continue
        digest.update(f.name.encode() + b"\0" + text.encode() + b"\0")
        try:
            loaded = _load_file(f, text, sessions, problems, inhibits, disabled)
        except RecursionError:
            problems.append(f"{f}: nested too deeply to parse")
            continue
        except MemoryError:
            problems.append(f"{f}: too large to load (out of memory)")
            continue
        except Exception as e:  # a shape no check above foresaw: a problem, not a crash
            problems.append(f"{f}: cannot be loaded: {type(e).__name__}: {e}"[:500])
            continue
        for rule in loaded:
            if rule.id in seen:
                problems.append(
                    f"{rule.source}: rule '{rule.id}': the id is already used at {seen[rule.id]}"
                )
                continue
            seen[rule.id] = rule.source
            rules.append(rule)
    _check_inhibits(inhibits, [*seen, *disabled], problems)
    if problems:
        raise RuleError(problems)
    return RuleSet(rules, digest.hexdigest()[:16], files, inhibits)


def _check_inhibits(inhibits: list[Inhibit], ids: list[str], problems: list[str]) -> None:
    """A rule matcher that matches no loaded rule is a typo that would silently disable the
    inhibition: say so (feed-health alerts are `feed:NAME`, so `feed:*` globs are allowed)."""
    for inh in inhibits:
        for side, m in (("source", inh.source), ("target", inh.target)):
            for glob in m.rules:
                if glob.startswith("feed:") and side == "target":
                    continue
                if not any(fnmatchcase(i, glob) for i in ids):
                    problems.append(
                        f"{inh.where}: inhibit: {side}.rule: '{glob}' matches no rule "
                        f"(rules: {', '.join(sorted(ids))})"
                    )


def _read(path: Path, problems: list[str]) -> str | None:
    """The file's text, or None with the reason in `problems` (unreadable, huge, not UTF-8)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_RULE_FILE_BYTES + 1)
    except OSError as e:
        problems.append(f"{path}: cannot be read: {e.strerror or e}")
        return None
    if len(data) > MAX_RULE_FILE_BYTES:
        problems.append(
            f"{path}: larger than {MAX_RULE_FILE_BYTES // 1024} KiB; rule files are small text "
            "files (split it, or check it is the file you meant)"
        )
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problems.append(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8"
        )
        return None


def _load_file(
    path: Path,
    text: str,
    sessions: list[str],
    problems: list[str],
    inhibits: list[Inhibit],
    disabled: list[str],
) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{path}: not valid TOML: {e}")
        return []
    unknown = set(data) - {"rule", "inhibit"}
    for key in sorted(unknown):
        problems.append(
            f"{path}:{_line_of(text, key, 0)}: unknown top-level key '{key}' "
            "(rules go in [[rule]] tables, inhibitions in [[inhibit]] tables)"
        )
    _load_inhibits(path, text, data.get("inhibit", []), problems, inhibits)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        problems.append(f"{path}: 'rule' must be written as [[rule]] tables")
        return []
    out = []
    for raw in raw_rules:
        if not isinstance(raw, dict):
            problems.append(f"{path}: each [[rule]] must be a table of keys")
            continue
        rid = str(raw.get("id", "?"))
        start = _rule_offset(text, rid)
        line = text.count("\n", 0, start) + 1
        where = f"{path}:{line}"
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as e:
            for key, kline, msg in _errors(e, text, start, line):
                problems.append(f"{path}:{kline}: rule '{rid}': {key}: {msg}")
            continue
        rule = _compile_rule(spec, path, text, start, where, sessions, problems)
        if rule is not None and spec.enabled:
            out.append(rule)
        elif not spec.enabled:
            disabled.append(spec.id)
    return out


def _errors(e: ValidationError, text: str, start: int, line: int) -> list[tuple[str, int, str]]:
    """(dotted key, file line, message) of each validation error; the line is the one of the
    deepest key named (`factor` of `[rule.escalate]`), else of the table."""
    out = []
    for err in e.errors():
        loc = [x for x in err["loc"] if isinstance(x, str)]
        key = ".".join(str(x) for x in err["loc"])
        kline = next(
            (k for name in reversed(loc) if (k := _key_line(text, name, start)) is not None),
            line,
        )
        msg = (
            "unknown key"
            if err["type"] in ("extra_forbid", "extra_forbidden")
            else err["msg"].removeprefix("Value error, ")
        )
        out.append((key, kline, msg))
    return out


def _load_inhibits(
    path: Path,
    text: str,
    raw: object,
    problems: list[str],
    out: list[Inhibit],
) -> None:
    if not isinstance(raw, list):
        problems.append(f"{path}: 'inhibit' must be written as [[inhibit]] tables")
        return
    heads = [m.start() for m in re.finditer(r"^\s*\[\[inhibit\]\]", text, re.M)]
    for n, item in enumerate(raw):
        start = heads[n] if n < len(heads) else 0
        line = text.count("\n", 0, start) + 1
        where = f"{path}:{line}"
        if not isinstance(item, dict):
            problems.append(f"{where}: each [[inhibit]] must be a table of keys")
            continue
        try:
            spec = InhibitSpec.model_validate(item)
        except ValidationError as e:
            for key, kline, msg in _errors(e, text, start, line):
                problems.append(f"{path}:{kline}: inhibit: {key}: {msg}")
            continue
        out.append(Inhibit(Matcher.of(spec.source), Matcher.of(spec.target), where))


def _compile_rule(
    spec: RuleSpec,
    path: Path,
    text: str,
    start: int,
    where: str,
    sessions: list[str],
    problems: list[str],
) -> Rule | None:
    n_before = len(problems)

    def compile_at(expr: str, key: str, expect: T) -> Compiled | None:
        try:
            return compile_expr(expr, sessions, expect)
        except ExprError as e:
            problems.append(_expr_problem(path, text, start, spec.id, key, expr, e))
            return None
        except (RecursionError, MemoryError) as e:
            what = "nested too deeply" if isinstance(e, RecursionError) else "too large"
            line = _line_of(text, key.split(".")[-1], start)
            problems.append(f"{path}:{line}: rule '{spec.id}': {key}: the expression is {what}")
            return None

    cond = compile_at(spec.when, "when", T.BOOL)
    values = {}
    for name, expr in spec.values.items():
        c = compile_at(expr, f"values.{name}", T.NUM)
        if c is not None:
            values[name] = c
    for field_name in _template_fields(spec, path, text, start, problems):
        if field_name not in spec.values:
            problems.append(
                f"{path}:{_line_of(text, 'summary', start)}: rule '{spec.id}': "
                f"summary uses {{{field_name}}}, which is not in [rule.values]"
            )
    escalate = None
    if spec.escalate is not None:
        esc = spec.escalate
        if esc.value is not None and esc.value not in spec.values:
            problems.append(
                f"{path}:{_line_of(text, 'value', start)}: rule '{spec.id}': escalate.value: "
                f"'{esc.value}' is not in [rule.values]"
            )
        steps = []
        for i, st in enumerate(esc.steps):
            c = compile_at(st.when, f"escalate.steps.{i}.when", T.BOOL)
            if c is not None:
                steps.append(Step(c, st.severity.value))
        escalate = Escalation(esc.value, esc.factor, tuple(steps))
    chart = spec.symbols
    if chart is not None:
        from bot.core.models import SYMBOLS

        for s in chart:
            if s not in SYMBOLS:
                problems.append(
                    f"{path}:{_line_of(text, 'symbols', start)}: rule '{spec.id}': "
                    f"symbols: unknown symbol '{s}'"
                )
    if cond is None or len(problems) > n_before:
        return None
    return Rule(
        id=spec.id,
        pattern=spec.pattern.value,
        severity=spec.severity.value,
        for_=spec.for_,
        cooldown=spec.cooldown,
        summary=spec.summary,
        resolve=spec.resolve,
        description=spec.description,
        condition=cond,
        values=values,
        chart_symbols=chart or cond.symbols,
        source=where,
        keep_firing_for=spec.keep_firing_for,
        repeat_interval=spec.repeat_interval,
        escalate=escalate,
    )


def _template_fields(
    spec: RuleSpec, path: Path, text: str, start: int, problems: list[str]
) -> list[str]:
    line = _line_of(text, "summary", start)
    try:
        parsed = list(string.Formatter().parse(spec.summary))
    except ValueError as e:
        problems.append(f"{path}:{line}: rule '{spec.id}': summary: {e}")
        return []
    names = []
    for _lit, name, fmt, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or conv:
            problems.append(
                f"{path}:{line}: rule '{spec.id}': summary: '{{{name}}}' must be a "
                "plain value name, optionally with a format such as {btc:+.1f}"
            )
            continue
        try:
            format(1.0, fmt or "")
        except ValueError:
            problems.append(
                f"{path}:{line}: rule '{spec.id}': summary: bad number format "
                f"'{fmt}' in {{{name}:{fmt}}}"
            )
            continue
        names.append(name)
    return names


def _rule_offset(text: str, rid: str) -> int:
    m = re.search(r'^\s*id\s*=\s*["\']' + re.escape(rid) + r'["\']', text, re.M)
    if not m:
        return 0
    # back up to the [[rule]] header that owns this id
    head = text.rfind("[[rule]]", 0, m.start())
    return head if head >= 0 else m.start()


def _key_line(text: str, key: str, start: int) -> int | None:
    """The line of the first `key =` at or after `start`, None when there is none."""
    m = re.compile(r"^\s*" + re.escape(key) + r"\s*=", re.M).search(text, start)
    if m is None:
        return None
    pos = m.start()
    return text.count("\n", 0, pos) + 1 + (1 if text[pos] == "\n" else 0)


def _line_of(text: str, key: str, start: int) -> int:
    """`_key_line`, else the line of `start`."""
    line = _key_line(text, key, start)
    return text.count("\n", 0, start) + 1 if line is None else line


def _expr_problem(
    path: Path, text: str, start: int, rid: str, key: str, expr: str, e: ExprError
) -> str:
    """Place an expression error on its file line and quote the offending text."""
    base_line = _line_of(text, key.split(".")[-1], start)
    first = expr.strip()
    pos = text.find(first, start) if first else -1
    if pos >= 0:
        base_line = text.count("\n", 0, pos) + 1
    quote = f": `{e.segment}`" if e.segment else ""
    return f"{path}:{base_line + e.line - 1}: rule '{rid}': {key}: {e.message}{quote}"
