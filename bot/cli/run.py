"""`stressbot run`: the live bot (feeds, engine, notifiers and the Telegram command bot)."""

from __future__ import annotations

import argparse

from bot.cli.common import add_config_option, add_rules_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the live bot: feeds, engine, notifiers",
        description="Stream and poll market data into Redis, evaluate the rules "
        "and deliver alerts, until interrupted.",
    )
    add_config_option(p)
    add_rules_option(p)
    p.set_defaults(handler=_run)


async def _run(args: argparse.Namespace) -> int:
    from bot.runtime.config import load_config
    from bot.runtime.live import run_live

    return await run_live(load_config(args.config), args.rules)
