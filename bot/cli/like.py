"""`stressbot like FILE... --at TIME`: the stress gauge and 'how much like 312' at any instant
of a replay; `stressbot episodes build|check`: the episode library (bot/engine/episodes.py).

    stressbot like ../shared/data/history/episode-312.csv --at 2020-03-16T21:00:00Z
    stressbot episodes check [rules/episodes]
    stressbot episodes build ../shared/data/history/dev-2019-2021.csv.gz --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.cli.common import add_config_option, add_rules_option, rules_for


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "like",
        help="stress score, its components and the closest episodes at a time of a replay",
        description="Replay FILE... (in memory) up to --at and print the stress score (0-100), "
        "each component's sigmas and contribution, and how much the cross-asset moves look "
        "like each episode of the library.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--at", required=True, metavar="TIME", help="ISO UTC, e.g. 2020-03-16T21:00Z")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_rules_option(p)
    add_config_option(p)
    p.set_defaults(handler=_like)

    e = sub.add_parser("episodes", help="check or build the episode library of 'stressbot like'")
    acts = e.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = acts.add_parser("check", help="validate episode files (file and field named)")
    c.add_argument("path", nargs="?", type=Path, metavar="FILE_OR_DIR")
    c.set_defaults(handler=_check)
    b = acts.add_parser(
        "build",
        help="recompute the episodes' vectors at their worst point from history files",
        description="Replay FILE... and, for every episode whose from/to window they cover, "
        "take the hour of the highest stress score in it and store the 5-day moves there "
        "(sigmas and percent/bp). Prints the library; --write saves it.",
    )
    b.add_argument("files", nargs="+", type=Path, metavar="FILE")
    b.add_argument("--library", type=Path, metavar="FILE", help="default: the shipped one")
    b.add_argument("--write", action="store_true", help="save the result into --library")
    add_rules_option(b)
    add_config_option(b)
    b.set_defaults(handler=_build)


def _at(text: str) -> float:
    from bot.core.errors import StressbotError
    from bot.core.models import parse_iso_utc

    try:
        return parse_iso_utc(text)
    except ValueError:
        raise StressbotError(f"--at: not an ISO time such as 2020-03-16T21:00Z: {text!r}") from None


async def _like(args: argparse.Namespace) -> int:
    import asyncio

    from bot.engine.episodes import format_like, library_for, stress_report
    from bot.runtime.config import load_config
    from bot.runtime.stress_history import engine_at

    config = load_config(args.config)
    rules = rules_for(config, args.rules)
    at = _at(args.at)
    engine = await asyncio.to_thread(engine_at, args.files, rules, config, at)
    report = stress_report(engine, library_for(rules.files), n=5)
    print(json.dumps(report, indent=2) if args.json else format_like(report))
    return 0


async def _check(args: argparse.Namespace) -> int:
    from bot.engine.episodes import load_library, shipped_library_dir

    path = args.path or shipped_library_dir()
    episodes = load_library(path)  # EpisodeError: printed by main, exit 2
    print(f"{path}: {len(episodes)} episode(s) OK: {', '.join(e.id for e in episodes)}")
    return 0


async def _build(args: argparse.Namespace) -> int:
    import asyncio

    from bot.engine.episodes import load_library, shipped_library_dir
    from bot.runtime.config import load_config
    from bot.runtime.stress_history import build_episodes, dump_library

    config = load_config(args.config)
    rules = rules_for(config, args.rules)
    path = args.library or shipped_library_dir() / "library.toml"
    episodes = load_library(path)
    for f in args.files:  # one file at a time: the daily and the hourly files are not spliced
        episodes, _ = await asyncio.to_thread(build_episodes, [f], rules, config, episodes)
    text = dump_library(episodes)
    if args.write:
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(episodes)} episode(s) written")
    else:
        print(text, end="")
    return 0
