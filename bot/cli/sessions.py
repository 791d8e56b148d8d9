"""`stressbot sessions FILE... --days N --out PNG`: the session dollar chart of a replay file.

The dollar index (USDX, computed from the FX legs in the files by the engine's formula; DXY
when the files have no legs) summed per trading session (``[sessions]``, local time, DST) over
the N days up to the end of the files or ``--at``; the same chart as ``/sessions`` and the one
attached to ``session_dollar`` alerts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import add_config_option
from bot.cli.report import _zone


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sessions",
        help="draw the dollar's cumulative return by session (Asia, Europe, New York)",
        description="Split the dollar index's returns in the history files into the "
        "configured trading sessions over the last N days and draw one line per session.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--days", type=float, default=10.0, metavar="N", help="days (default 10)")
    p.add_argument("--out", type=Path, metavar="PNG", required=True, help="the PNG to write")
    p.add_argument("--at", metavar="TIME", help="end of the N days (default: end of the files)")
    p.add_argument("--zone", metavar="TZ", help="display time zone (default: [display])")
    add_config_option(p)
    p.set_defaults(handler=_sessions)


async def _sessions(args: argparse.Namespace) -> int:
    import asyncio

    from bot.core.errors import StressbotError
    from bot.engine.sessions import sessions_from_config
    from bot.runtime.config import load_config
    from bot.runtime.report import read_paths
    from bot.telegram.session_chart import DOLLAR_SYMBOLS, RATE_SYMBOL, draw_sessions, summary_line
    from connectors.history.file import parse_time

    config = load_config(args.config)
    zone = _zone(args.zone) or config.display.timezone
    if not 1 <= args.days <= 366:
        raise StressbotError("--days must be from 1 to 366")
    paths, _, _ = await asyncio.to_thread(read_paths, args.files)
    for sym in DOLLAR_SYMBOLS:
        pts = paths.get(sym, [])
        if len(pts) >= 2:
            break
    else:
        raise StressbotError("no dollar index in the files (no USDX legs such as EUR/USD, no DXY)")
    if args.at is None:
        at = pts[-1][0]
    else:
        try:
            at = parse_time(args.at)
        except ValueError as ex:
            raise StressbotError(f"--at {args.at!r}: {ex}") from None
    png, sess = await asyncio.to_thread(
        draw_sessions, sym, pts, sessions_from_config(config.sessions), now=at,
        days=args.days, zone=zone, rates={RATE_SYMBOL: paths.get(RATE_SYMBOL, [])},
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"{sym} by session over {args.days:g} days: {summary_line(sess)}")
    print(f"chart written to {args.out}")
    return 0
