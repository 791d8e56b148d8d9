"""`stressbot rules calibrate`: how often each rule speaks on real history, episode by episode.

See :mod:`bot.runtime.calibrate` for what is measured. The README's calibration table is its
``--markdown`` output on the reference history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import add_config_option, add_rules_option, rules_for

DEFAULT_EPISODES = Path(__file__).resolve().parents[2] / "rules" / "tests" / "episodes.toml"


def add_to(rules_actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `calibrate` to the `stressbot rules` actions."""
    p = rules_actions.add_parser(
        "calibrate",
        help="replay history files and report each rule's alerts, noise and episode hits",
        description="Replay each history file on its own (in memory) and print, per rule: "
        "firing alerts, alert-days, alert-days a year outside the documented stress episodes; "
        "then, per episode, whether the expected rules fired and the silent ones stayed so. "
        "Exits 1 if an episode's expectation fails.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_rules_option(p)
    add_config_option(p)
    p.add_argument(
        "--episodes",
        type=Path,
        metavar="FILE",
        default=DEFAULT_EPISODES,
        help="episode library (default: rules/tests/episodes.toml)",
    )
    p.add_argument("--markdown", action="store_true", help="tables in Markdown, for the README")
    p.set_defaults(handler=_calibrate)


async def _calibrate(args: argparse.Namespace) -> int:
    import asyncio

    from bot.core.errors import StressbotError
    from bot.runtime.calibrate import calibrate_file, format_report, load_episodes
    from bot.runtime.config import load_config

    config = load_config(args.config)
    rules = rules_for(config, args.rules)
    episodes = load_episodes(args.episodes)
    bad = 0
    for path in args.files:
        if not path.is_file():
            raise StressbotError(f"{path}: no such history file")
        report = await asyncio.to_thread(calibrate_file, path, rules, config, episodes)
        print(format_report(report, markdown=args.markdown), end="\n\n")
        bad += sum(not c.ok for c in report.episodes)
    if bad:
        print(f"{bad} episode expectation(s) not met")
    return 1 if bad else 0
