"""Inhibition declared in rule files (`[[inhibit]]`, like Alertmanager's inhibit_rules): while
a source fires, target alerts are held back and named in the source's next message; a target
still firing when the source stops is announced then; feed-health alerts raised outside the
rules pass the same inhibition. And the rule-file errors for every new key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.errors import RuleError
from bot.core.models import Alert, AlertKind
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet, load_rules

M = 60.0
H = 3600.0

RULES = """
[[rule]]
id = "crisis"
pattern = "liquidity_crisis"
severity = "critical"
when = 'last("XAU/USD") < 50'
for = "0s"
cooldown = "1d"
summary = "crisis: gold {{g:.0f}}"
{source_extra}
[rule.values]
g = 'last("XAU/USD")'

[[rule]]
id = "crash"
pattern = "crypto_crash"
severity = "warning"
when = 'last("BTC/USD") < 50'
for = "0s"
cooldown = "1d"
summary = "crash: BTC {{b:.0f}}"
[rule.values]
b = 'last("BTC/USD")'

[[rule]]
id = "rates_up"
pattern = "rates_shock"
severity = "info"
when = 'last("US10Y") > 5'
for = "0s"
cooldown = "1d"
summary = "rates {{y:.2f}}"
[rule.values]
y = 'last("US10Y")'

[[inhibit]]
source = {{ rule = "crisis" }}
target = {{ rule = ["crash", "rates_*"], pattern = ["crypto_crash", "rates_shock", "feed_health"] }}
why = "the crisis explains them"

[[inhibit]]
source = {{ pattern = "liquidity_crisis" }}
target = {{ pattern = "feed_health" }}
"""


def rules_from(tmp_path: Path, body: str) -> RuleSet:
    (tmp_path / "r.toml").write_text(body)
    return load_rules(tmp_path, ["asia", "europe", "us"])


def engine(tmp_path: Path, source_extra: str = "") -> Engine:
    return Engine(
        rules_from(tmp_path, RULES.format(source_extra=source_extra)), {}, wild_print_pct=0.0
    )


def feed(e: Engine, ticks: list[tuple[float, str, float]], finish: bool = True) -> list[Alert]:
    out: list[Alert] = []
    for t, s, v in ticks:
        e.add(t, s, v)
        out += e.take_alerts()
    return out + (e.finish() if finish else [])


def seen(alerts: list[Alert]) -> list[tuple[str, str, float]]:
    return [(a.rule, a.kind.value, a.ts) for a in alerts]


def test_a_target_is_held_back_while_the_source_fires_and_named_in_its_next_message(
    tmp_path: Path,
) -> None:
    e = engine(tmp_path)
    ticks = [
        (0, "XAU/USD", 40.0),  # crisis fires
        (10 * M, "BTC/USD", 40.0),  # crash: held back
        (20 * M, "US10Y", 6.0),  # rates: held back
        (30 * M, "BTC/USD", 60.0),  # crash over while held: never announced nor resolved
        (H, "XAU/USD", 60.0),  # crisis resolves: names what it held back
    ]
    alerts = feed(e, ticks)
    assert seen(alerts)[:2] == [("crisis", "firing", 0), ("crisis", "resolved", H)]
    assert "Held back while this fires: crash (1970-01-01T00:10:00Z)" in alerts[1].summary
    assert "rates_up (1970-01-01T00:20:00Z)" in alerts[1].summary
    # rates is still firing when the crisis ends: it is announced then (delayed, not dropped)
    assert seen(alerts)[2:] == [("rates_up", "firing", H)]
    assert e.stats.inhibited == {"crash": 1, "rates_up": 1}


def test_a_target_raised_in_the_same_step_as_its_source_is_held_back_too(
    tmp_path: Path,
) -> None:
    # crash comes first in the file, so it is evaluated before crisis in the same instant
    e = engine(tmp_path)
    alerts = feed(e, [(0, "BTC/USD", 40.0), (0, "XAU/USD", 40.0), (M, "XAU/USD", 40.0)])
    assert seen(alerts) == [("crisis", "firing", 0)]
    assert "Held back while this fires: crash" in alerts[0].summary


def test_a_reminder_of_the_source_names_what_it_held_back(tmp_path: Path) -> None:
    e = engine(tmp_path, source_extra='repeat_interval = "1h"')
    ticks = [(0, "XAU/USD", 40.0), (10 * M, "BTC/USD", 40.0), (H, "XAU/USD", 40.0)]
    alerts = feed(e, ticks)
    assert seen(alerts) == [("crisis", "firing", 0), ("crisis", "reminder", H)]
    assert "Held back while this fires: crash" in alerts[1].summary


def test_without_a_source_firing_nothing_is_held(tmp_path: Path) -> None:
    alerts = feed(engine(tmp_path), [(0, "BTC/USD", 40.0), (M, "BTC/USD", 60.0)])
    assert seen(alerts) == [("crash", "firing", 0), ("crash", "resolved", M)]


def feed_alert(name: str, ts: float, kind: AlertKind = AlertKind.FIRING) -> Alert:
    suffix = "" if kind is AlertKind.FIRING else ":resolved"
    rule = f"feed:{name}"
    return Alert(f"{rule}@t{suffix}", ts, rule, "feed_health", "warning", "down", kind)


def test_feed_alerts_are_held_back_released_or_cancelled_with_their_recovery(
    tmp_path: Path,
) -> None:
    e = engine(tmp_path)
    first = feed(e, [(0.0, "XAU/USD", 40.0), (M, "XAU/USD", 40.0)], finish=False)
    assert seen(first) == [("crisis", "firing", 0)]
    e.raise_external([feed_alert("kraken", 10.0), feed_alert("oanda", 11.0)])
    assert e.take_alerts() == []
    e.raise_external([feed_alert("kraken", 20.0, AlertKind.RESOLVED)])  # down and back: nothing
    # a restart while one is held back keeps it
    snap = e.snapshot()
    e2 = engine(tmp_path)
    e2.restore(snap)
    assert e2.snapshot() == snap
    alerts = feed(e2, [(H, "XAU/USD", 60.0)])
    assert [(a.rule, a.kind.value) for a in alerts] == [
        ("crisis", "resolved"),
        ("feed:oanda", "firing"),
    ]
    assert "feed:kraken (1970-01-01T00:00:10Z)" in alerts[0].summary
    assert alerts[1].ts == 11.0 and "held back until 1970-01-01T01:00:00Z" in alerts[1].summary
    # no source firing: straight through
    e2.raise_external([feed_alert("oanda", H + 5, AlertKind.RESOLVED)])
    assert [a.kind for a in e2.take_alerts()] == [AlertKind.RESOLVED]


# ---- rule-file errors name the file, the line and the field --------------------------------

GOOD = """
[[rule]]
id = "r"
pattern = "custom"
severity = "info"
when = 'last("BTC/USD") < 5'
for = "0s"
cooldown = "1h"
summary = "BTC {b}"
"""


@pytest.mark.parametrize(
    ("extra", "tables", "expect"),
    [
        ('keep_firing_for = "soon"', "", ":10: rule 'r': keep_firing_for: expected a duration"),
        ('keep_firing_for = "-1s"', "", "keep_firing_for: expected a duration"),
        ('repeat_interval = "0s"', "", ":10: rule 'r': repeat_interval: Input should be greater"),
        ("", "[rule.escalate]\nfactor = 0.5\nvalue = 'b'", ":14: rule 'r': escalate.factor: "),
        ("", "[rule.escalate]\nvalue = 'nope'", ":14: rule 'r': escalate.value: 'nope' is not in"),
        ("", "[rule.escalate]\nfactor = 2", "escalate: Value error, give `value`"),
        ("", "[rule.escalate]\nvalue = 'b'\nwhy = 1", ":15: rule 'r': escalate.why: unknown key"),
        (
            "",
            '[rule.escalate]\nsteps = [{ when = \'last("BTC/USD") <\', severity = "warning" }]',
            "rule 'r': escalate.steps.0.when:",
        ),
        (
            "",
            "[rule.escalate]\nsteps = [{ when = 'true', severity = \"dire\" }]",
            "rule 'r': escalate.steps.0.severity: Input should be 'info'",
        ),
    ],
)
def test_bad_policy_keys_name_file_line_and_field(
    tmp_path: Path, extra: str, tables: str, expect: str
) -> None:
    body = GOOD + extra + "\n[rule.values]\nb = 'last(\"BTC/USD\")'\n" + tables + "\n"
    with pytest.raises(RuleError) as e:
        rules_from(tmp_path, body)
    text = "\n".join(e.value.problems)
    assert str(tmp_path / "r.toml") in text
    assert expect.replace("Value error, ", "") in text, text


@pytest.mark.parametrize(
    ("inhibit", "expect"),
    [
        ("source = { rule = 'r' }", ":12: inhibit: target: Field required"),
        ("source = { rule = 'x*' }\ntarget = { rule = 'r' }", "source.rule: 'x*' matches no rule"),
        ("source = { rule = 'r' }\ntarget = { pattern = 'dash' }", "inhibit: target.pattern.0:"),
        ("source = {}\ntarget = { rule = 'r' }", "inhibit: source: give at least one of"),
        ("source = { rule = 'r', name = 1 }\ntarget = { rule = 'r' }", "source.name: unknown key"),
        ("source = { severity = 'loud' }\ntarget = { rule = 'r' }", "source.severity.0:"),
    ],
)
def test_bad_inhibit_tables_name_file_line_and_field(
    tmp_path: Path, inhibit: str, expect: str
) -> None:
    body = GOOD + "[rule.values]\nb = 'last(\"BTC/USD\")'\n\n[[inhibit]]\n" + inhibit + "\n"
    with pytest.raises(RuleError) as e:
        rules_from(tmp_path, body)
    text = "\n".join(e.value.problems)
    assert str(tmp_path / "r.toml") in text
    assert expect in text, text


def test_an_inhibit_may_name_a_disabled_rule_and_feed_globs(tmp_path: Path) -> None:
    body = (
        GOOD
        + "enabled = false\n[rule.values]\nb = 'last(\"BTC/USD\")'\n\n[[inhibit]]\n"
        + "source = { rule = 'r' }\ntarget = { rule = 'feed:*' }\n"
    )
    (tmp_path / "other.toml").write_text(GOOD.replace('"r"', '"s"') + "[rule.values]\nb = '1'\n")
    rs = rules_from(tmp_path, body)
    assert len(rs.inhibits) == 1 and [r.id for r in rs.rules] == ["s"]
