"""Rule files: problems are reported with file, line and the offending text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.errors import RuleError
from bot.engine.rulefile import default_rules_dir, load_rules

SESSIONS = ["asia", "europe", "us"]


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def problems(tmp_path: Path) -> list[str]:
    with pytest.raises(RuleError) as e:
        load_rules(tmp_path, SESSIONS)
    return e.value.problems


RULE = """# a comment
[[rule]]
id = "x"
pattern = "custom"
severity = "info"
when = \'\'\'
last("SPX") > 0
and ret("XAU", "5d") < 0
\'\'\'
for = "0s"
cooldown = "1h"
summary = "spx {spx}"
[rule.values]
spx = 'last("SPX")'
"""


def test_the_shipped_rules_load() -> None:
    rs = load_rules(default_rules_dir(), SESSIONS)
    assert {r.pattern for r in rs.rules} == {
        "liquidity_crisis",
        "crypto_crash",
        "session_dollar",
        "funding_stress",
        "rates_shock",
    }


def test_unknown_symbol_is_reported_on_its_own_line(tmp_path: Path) -> None:
    [p] = problems(write(tmp_path, RULE))
    assert p.startswith(f"{tmp_path / 'r.toml'}:8: rule 'x': when: unknown symbol 'XAU'")
    assert p.endswith('`"XAU"`')


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    [p] = problems(
        write(
            tmp_path,
            RULE.replace('for = "0s"', 'for = "0s"\nfour = 1').replace('"XAU"', '"XAU/USD"'),
        )
    )
    assert "rule 'x': four: unknown key" in p


def test_bad_duration_in_for_is_reported(tmp_path: Path) -> None:
    [p] = problems(
        write(tmp_path, RULE.replace('for = "0s"', 'for = "a while"').replace('"XAU"', '"XAU/USD"'))
    )
    assert ":10: rule 'x': for:" in p and "expected a duration" in p


def test_summary_may_only_use_declared_values(tmp_path: Path) -> None:
    text = RULE.replace('"XAU"', '"XAU/USD"').replace("spx {spx}", "spx {spx} {btc.__class__}")
    [p] = problems(write(tmp_path, text))
    assert "summary" in p and "plain value name" in p


def test_duplicate_ids_across_files_are_reported(tmp_path: Path) -> None:
    ok = RULE.replace('"XAU"', '"XAU/USD"')
    write(tmp_path, ok, "a.toml")
    write(tmp_path, ok, "b.toml")
    [p] = problems(tmp_path)
    assert "b.toml" in p and "already used at" in p and "a.toml:2" in p


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    [p] = problems(write(tmp_path, "[[rule]\n"))
    assert p.startswith(f"{tmp_path / 'r.toml'}: not valid TOML")


def test_rules_check_exits_non_zero_with_the_messages(tmp_path: Path) -> None:
    write(tmp_path, RULE)
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "rules", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "unknown symbol 'XAU'" in r.stderr and "1 problem(s) found" in r.stderr


def test_rules_check_passes_the_shipped_rules() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "rules", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    assert "7 rule(s) in 5 file(s) are valid" in r.stdout
