"""`stressbot rules calibrate`: alert counts, noise outside documented episodes, episode hits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.calibrate import calibrate_file, format_report, load_episodes
from bot.runtime.config import Config
from tests.conftest import ROOT

# Two SOFR prints over IORB in a row: the shipped funding_stress fires on 2024-06-05.
SPIKES = """ts,symbol,value
2024-06-03T04:00:00Z,IORB,5.40
2024-06-04T12:00:00Z,SOFR,5.60
2024-06-05T12:00:00Z,SOFR,5.62
2024-06-06T12:00:00Z,SOFR,5.33
"""


def _files(tmp_path: Path, episodes: str) -> tuple[Path, Path]:
    data = tmp_path / "spikes.csv"
    data.write_text(SPIKES)
    ep = tmp_path / "episodes.toml"
    ep.write_text(episodes)
    return data, ep


def _report(tmp_path: Path, episodes: str) -> str:
    data, ep = _files(tmp_path, episodes)
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    return format_report(calibrate_file(data, rules, config, load_episodes(ep)))


def test_an_alert_inside_an_episode_is_a_hit_and_not_noise(tmp_path: Path) -> None:
    out = _report(
        tmp_path,
        """
[[episode]]
name = "spike"
from = "2024-06-04"
to = "2024-06-06"
why = "test"
expect = [{ rule = "funding_stress", from = "2024-06-04", to = "2024-06-05" }]
silent = ["liquidity_crisis"]
""",
    )
    assert "funding_stress fired 2024-06-05T12:00:00Z (window 2024-06-04..2024-06-05)" in out
    assert "liquidity_crisis silent, as it should be" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("funding_stress"))
    assert row.split() == ["funding_stress", "1", "1", "0.00"]


def test_an_alert_outside_every_episode_counts_as_noise_per_year(tmp_path: Path) -> None:
    out = _report(
        tmp_path,
        """
[[episode]]
name = "elsewhere"
from = "2020-01-01"
to = "2020-01-31"
why = "not in this file's span"
""",
    )
    assert "elsewhere" not in out  # outside the file's span: not reported
    row = next(ln for ln in out.splitlines() if ln.startswith("funding_stress"))
    # 1 alert-day in a 3-day file: the span is floored at one day, so 365.25 a year
    assert row.split()[:3] == ["funding_stress", "1", "1"]
    assert float(row.split()[3]) > 100


def test_a_missed_expectation_fails_the_command(tmp_path: Path) -> None:
    data, ep = _files(
        tmp_path,
        """
[[episode]]
name = "wrong window"
from = "2024-06-04"
to = "2024-06-06"
why = "test"
expect = [{ rule = "funding_stress", from = "2024-06-06", to = "2024-06-06" }]
""",
    )
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "rules", "calibrate", str(data), "--episodes", str(ep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BAD wrong window (2024-06-04..2024-06-06)" in r.stdout
    assert "funding_stress MISSED (window 2024-06-06..2024-06-06)" in r.stdout


def test_a_bad_episode_file_names_the_key(tmp_path: Path) -> None:
    data, ep = _files(tmp_path, '[[episode]]\nname = "x"\nfrom = "2024-06-04"\n')
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "rules", "calibrate", str(data), "--episodes", str(ep)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert f"{ep}: episode.0.to: Field required" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_shipped_episode_library_names_only_shipped_rules() -> None:
    episodes = load_episodes(ROOT / "rules" / "tests" / "episodes.toml")
    rules = {r.id for r in load_rules(default_rules_dir(), Config().sessions).rules}
    named = {x.rule for e in episodes for x in e.expect} | {r for e in episodes for r in e.silent}
    assert named <= rules
    assert len({e.name for e in episodes}) == len(episodes)
