"""The `stressbot` command line.

Each command lives in the module that owns the work; this file only wires them up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bot import __version__
from bot.cli.logs import setup_logging
from bot.core.errors import StressbotError

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    from bot.cli import commands

    parser = argparse.ArgumentParser(
        prog="stressbot",
        description="Real-time market-stress alerts (312-style dash for cash and friends).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or one JSON object a line (ts, level, logger, "
        "message, extra fields), secrets redacted",
    )
    parser.add_argument("--version", action="version", version=f"stressbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args))
    except StressbotError as e:
        print(f"stressbot: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
