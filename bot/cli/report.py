"""`stressbot report FILE... --out DIR`: the replay report, one self-contained HTML page.

See :mod:`bot.runtime.report` for what the page holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import add_config_option, add_rules_option, rules_for


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="replay history files into a self-contained HTML report (charts, alerts, counts)",
        description="Run the rules over CSV history (ts,symbol,value; .gz accepted; several "
        "files merged by time) in memory and write DIR/index.html: the watched assets' price "
        "paths normalised, VIX, yields in bp and the stress score beneath them, every alert "
        "marked on the timeline, the session dollar chart, per-rule counts and a table of the "
        "alerts with their numbers. The page loads nothing from the network; the charts are "
        "embedded and also written beside it as PNG.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, metavar="DIR", required=True, help="output folder")
    add_rules_option(p)
    add_config_option(p)
    p.add_argument("--zone", metavar="TZ", help="display time zone (default: [display])")
    p.add_argument(
        "--session-days",
        type=float,
        default=10.0,
        metavar="N",
        help="days of the session dollar chart, up to the end of the files (default 10)",
    )
    p.set_defaults(handler=_report)


async def _report(args: argparse.Namespace) -> int:
    import asyncio

    from bot.core.errors import StressbotError
    from bot.runtime.config import load_config
    from bot.runtime.report import rule_counts, write_report

    config = load_config(args.config)
    rules = rules_for(config, args.rules)
    zone = _zone(args.zone)
    if not 1 <= args.session_days <= 60:
        raise StressbotError("--session-days must be from 1 to 60")
    page, data = await asyncio.to_thread(
        write_report, args.files, args.out, rules, config, zone=zone,
        session_days=args.session_days,
    )  # fmt: skip
    print(f"report written to {page}")
    for rule, c in rule_counts(data.alerts).items():
        print(f"  {rule:<22}" + ", ".join(f"{k} {n}" for k, n in sorted(c.items())))
    for note in data.notes:
        print(f"  note: {note}")
    return 0


def _zone(name: str | None) -> str | None:
    """A zone name checked here, so a typo is an error naming the option."""
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from bot.core.errors import StressbotError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StressbotError(
            f"--zone {name!r}: not an IANA time zone (e.g. Europe/Zurich)"
        ) from None
    return name
