"""`stressbot notify serve|drain`: the notifiers on their own.

``serve`` delivers continuously until SIGTERM/SIGINT (the same service ``stressbot run`` runs);
``drain`` delivers what is in the outbox, prints the report and exits 1 if anything is left.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from bot.cli.common import add_config_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "notify",
        help="deliver the outbox to Telegram and Discord (serve, or drain once)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", choices=["serve", "drain"])
    add_config_option(p, required=True)
    p.set_defaults(handler=_notify)


async def _notify(args: argparse.Namespace) -> int:
    from bot.notify.service import NotifierService, deliver_pending
    from bot.runtime.config import load_config
    from bot.store.connection import open_store
    from bot.telegram.session_chart import alert_renderer

    config = load_config(args.config)
    async with open_store(config.redis) as (store, _):
        if args.mode == "drain":
            report = await deliver_pending(config, store, renderer=alert_renderer(config.sessions))
            print(report.summary())
            return 0 if report.complete else 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await NotifierService(config, store, renderer=alert_renderer(config.sessions)).run(stop)
        return 0
