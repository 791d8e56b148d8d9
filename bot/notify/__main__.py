"""Run the notifiers on their own: ``python -m bot.notify serve|drain --config FILE``.

``serve`` delivers continuously until SIGTERM/SIGINT (the same service ``stressbot run`` runs);
``drain`` delivers what is in the outbox and prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.core.errors import StressbotError
from bot.notify.service import NotifierService, deliver_pending
from bot.runtime.config import load_config
from bot.store.connection import connect
from bot.store.redis_store import Store


async def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    redis, _embedded = await connect(config.redis_url)
    store = Store(redis, prefix=config.redis.prefix, tick_maxlen=config.redis.tick_maxlen)
    try:
        if args.mode == "drain":
            report = await deliver_pending(config, store)
            print(report.summary())
            return 0 if report.complete else 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await NotifierService(config, store).run(stop)
        return 0
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.notify", description=__doc__)
    ap.add_argument("mode", choices=["serve", "drain"])
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(_main(args))
    except StressbotError as e:
        print(f"stressbot: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
