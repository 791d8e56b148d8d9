"""The episode library of 'how much like 312': loading and validation with file and field
named, the similarity measure, a user's own episodes, and `stressbot episodes build`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.engine.episodes import (
    ASSETS,
    Episode,
    EpisodeError,
    library_for,
    likeness,
    load_library,
    parse_library,
    shipped_library_dir,
)
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.stress_history import build_episodes, dump_library
from tests.conftest import shared_path

GOOD = """
[[episode]]
id = "mine"
name = "My crash"
from = "2022-06-10"
to = "2022-06-20"
moves = { SPX = -3.0, NDX = -3.5, "BTC/USD" = -4.0, VIX = 3.0, USD = 1.0 }
"""


def test_the_shipped_library_loads_with_312_and_519() -> None:
    lib = load_library(shipped_library_dir())
    ids = [e.id for e in lib]
    assert {"312", "519", "gfc_2008"} <= set(ids)
    e312 = next(e for e in lib if e.id == "312")
    assert e312.moves["SPX"] < -3 and e312.moves["USD"] > 2 and e312.moves["XAU/USD"] < -2
    e519 = next(e for e in lib if e.id == "519")
    assert min(e519.moves, key=lambda k: e519.moves[k]) == "BTC/USD"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('SPX = -3.0', '"SPY" = -3.0'),
         "episode #1 'mine': moves: unknown market 'SPY'"),
        (GOOD.replace('name = "My crash"\n', ""), "episode #1 'mine': name: Field required"),
        (GOOD.replace('to = "2022-06-20"', 'to = "2022-06-01"'), "to: 2022-06-01 is before from"),
        (GOOD.replace("VIX = 3.0", "VIX = 30.0"), "moves: VIX: 30.0 sigmas is beyond"),
        (GOOD.replace("moves = {", "moves = { N225 = -1,").replace('id = "mine"', 'id = "x y"'),
         "episode #1 'x y': id: String should match pattern"),
        (GOOD + GOOD, "episode #2 'mine': id: 'mine' is already used"),
        (GOOD.replace("[[episode]]", "[[episodes]]"), "unknown top-level key 'episodes'"),
        (GOOD + "colour = 1\n", "episode #1 'mine': colour: unknown key"),
        ("[[episode]\n", "not valid TOML"),
        (GOOD.replace(', VIX = 3.0, USD = 1.0', ""), "moves: needs at least 4 markets, has 3"),
    ],
)  # fmt: skip
def test_a_bad_episode_is_reported_with_file_and_field(text: str, message: str) -> None:
    with pytest.raises(EpisodeError) as ei:
        parse_library(text, "my.toml")
    assert all(p.startswith("my.toml: ") for p in ei.value.problems)
    assert message in str(ei.value), str(ei.value)


def test_episodes_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["episodes", "check"]) == 0
    assert "episode(s) OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("SPX", "SPY"))
    assert main(["episodes", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: episode #1 'mine': moves: unknown market 'SPY'" in err
    assert "Traceback" not in err


def ep(moves: dict[str, float]) -> Episode:
    return Episode("e", "E", moves)


def test_similarity_reads_direction_and_size() -> None:
    e = ep({"SPX": -4.0, "NDX": -4.0, "BTC/USD": -3.0, "USD": 2.0, "VIX": 4.0})
    same = likeness(dict(e.moves), e)
    assert same is not None and same.similarity == pytest.approx(1.0)
    assert same.differs == [] and same.matches[0] in ("SPX", "NDX", "VIX")
    half = likeness({k: v / 2 for k, v in e.moves.items()}, e)
    assert half is not None and half.similarity == pytest.approx(math.sqrt(0.5))
    opposite = likeness({k: -v for k, v in e.moves.items()}, e)
    assert opposite is not None and opposite.similarity == 0.0
    crypto_only = likeness({"SPX": 0.2, "NDX": 0.1, "BTC/USD": -4.0, "USD": 0.0, "VIX": 0.5}, e)
    assert crypto_only is not None and crypto_only.similarity < 0.5
    assert any(d.startswith("SPX +0.2 vs -4.0") for d in crypto_only.differs)
    partial = likeness({"SPX": -4.0, "NDX": -4.0, "USD": 2.0, "VIX": 4.0}, e)
    assert partial is not None and partial.missing == ["BTC/USD"]
    assert likeness({"SPX": -4.0, "NDX": -4.0}, e) is None  # fewer than 4 markets in common


def test_a_users_episode_folder_beside_the_rules_is_used(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "episodes").mkdir(parents=True)
    (rules / "r.toml").write_text(
        '[[rule]]\nid = "x"\npattern = "custom"\nseverity = "info"\nwhen = \'last("SPX") > 1\'\n'
        'for = "0s"\ncooldown = "1h"\nsummary = "x"\n'
    )
    (rules / "episodes" / "mine.toml").write_text(GOOD)
    rs = load_rules(rules, Config().sessions)
    assert [e.id for e in library_for(rs.files)] == ["mine"]
    (rules / "episodes" / "mine.toml").write_text(GOOD.replace("SPX", "SPY"))  # broken: shipped
    assert "312" in [e.id for e in library_for(rs.files)]


@pytest.mark.shared
def test_build_takes_the_worst_point_of_the_window_from_a_history_file() -> None:
    path = shared_path("data", "history", "episode-312.csv")
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    spec = parse_library(
        GOOD.replace("2022-06-10", "2020-03-09").replace("2022-06-20", "2020-03-20"), "x"
    )
    other = Episode("later", "not in the file", {"SPX": 1.0, "NDX": 1.0, "VIX": 1.0, "USD": 1.0},
                    start="2023-01-01", end="2023-01-02")  # fmt: skip
    built, left = build_episodes([path], rules, config, [*spec, other])
    assert left == ["later"] and built[1] == other
    b = built[0]
    assert "2020-03-09" <= b.at[:10] <= "2020-03-20" and b.score is not None and b.score > 90
    assert b.source == "episode-312.csv" and set(b.moves) == set(ASSETS)
    assert b.moves["SPX"] < -3 and b.moves["XAU/USD"] < 0 and b.raw["SPX"] < -8
    again = parse_library(dump_library(built), "dumped.toml")
    assert again == built
