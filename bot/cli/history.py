"""`stressbot history download`: the argparse command that builds a replay file.

Only argparse and the defaults load at start-up; the download itself
(:mod:`connectors.history.download`) and the exchange sources load when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.history.common import (
    DEFAULT_FRED_URL,
    DEFAULT_MIN_INTERVAL,
    DEFAULT_TIMEOUT,
    DOWNLOAD_RETRY,
    HistoryDownloadError,
    Progress,
)

if TYPE_CHECKING:
    from connectors.history.download import DownloadOptions


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from e


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise HistoryDownloadError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _history_subparsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The `history` command's sub-commands, shared with other `history ...` registrations."""
    parser = sub.choices.get("history")
    if parser is None:
        parser = sub.add_parser("history", help="build replay files from public history")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="history_command", required=True, metavar="ACTION")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `history download` (argparse only; the sources load when the command runs)."""
    p = _history_subparsers(sub).add_parser(
        "download",
        help="build a replay file from public keyless sources (FRED, exchanges via ccxt)",
        description=(
            "Build a replay file (ts,symbol,value; ts = when each value became known) from "
            "FRED's keyless CSV download and exchange hourly bars through ccxt. FRED has no "
            "ICE dollar index (DXY) and no gold price: DXY is not produced (the engine derives "
            "its own dollar index USDX from the FX legs) and XAU/USD is tokenised gold "
            "(PAXG). Fetched chunks are cached, so a re-run fetches nothing new and an "
            "interrupted run resumes."
        ),
    )
    p.add_argument(
        "--from",
        dest="start",
        type=_date,
        required=True,
        metavar="DATE",
        help="first UTC day of ts (YYYY-MM-DD)",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=_date,
        required=True,
        metavar="DATE",
        help="last UTC day of ts, inclusive",
    )
    p.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYM",
        help="symbols to include (default: all: BTC/USD XAU/USD US2Y US10Y US30Y "
        "SOFR IORB EUR/USD USD/JPY GBP/USD USD/CAD USD/CHF USD/SEK SPX NDX "
        "N225 VIX)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="output file; gzip when it ends in .gz",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="cache directory (default $STRESSBOT_CACHE or ~/.cache/stressbot)",
    )
    p.add_argument(
        "--fred-url",
        default=DEFAULT_FRED_URL,
        metavar="URL",
        help=f"FRED CSV endpoint (default {DEFAULT_FRED_URL})",
    )
    p.add_argument(
        "--market",
        action="append",
        metavar="SYMBOL=EXCHANGE:MARKET",
        help="exchange market for a symbol, e.g. XAU/USD=kraken:PAXG/USD "
        "(defaults: BTC/USD=bitstamp:BTC/USD, XAU/USD=kraken:PAXG/USD). "
        "Append @ohlcv or @trades to force how bars are made; by default "
        "Kraken months older than its latest 720 bars are built from trades",
    )
    p.add_argument(
        "--exchange-url",
        action="append",
        metavar="EXCHANGE=URL",
        help="base URL of an exchange's REST API, e.g. kraken=http://127.0.0.1:8080",
    )
    p.add_argument(
        "--min-interval",
        type=float,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help=f"minimum time between requests to one host (default {DEFAULT_MIN_INTERVAL})",
    )
    p.add_argument(
        "--host-interval",
        action="append",
        metavar="HOST=SECONDS",
        help="minimum interval for one host (host[:port])",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"timeout of each request (default {DEFAULT_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries per request on 429/5xx/network errors (default 5)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run_download_command)


def options_from_args(args: argparse.Namespace, progress: Progress | None) -> DownloadOptions:
    from connectors.history.download import DownloadOptions
    from connectors.history.ohlc import DEFAULT_MARKETS, MarketSpec

    markets = dict(DEFAULT_MARKETS)
    for symbol, spec in _pairs(args.market, "--market").items():
        markets[symbol] = MarketSpec.parse(spec)
    try:
        pairs = _pairs(args.host_interval, "--host-interval")
        host_intervals = {h: float(v) for h, v in pairs.items()}
    except ValueError as e:
        raise HistoryDownloadError(f"--host-interval: seconds must be a number ({e})") from e
    if args.retries < 0:
        raise HistoryDownloadError("--retries must be 0 or more")
    return DownloadOptions(
        start=args.start,
        end=args.end,
        symbols=args.symbols,
        cache_dir=args.cache,
        fred_url=args.fred_url,
        markets=markets,
        exchange_urls=_pairs(args.exchange_url, "--exchange-url"),
        min_interval=args.min_interval,
        host_intervals=host_intervals,
        timeout=args.timeout,
        retry=dataclasses.replace(DOWNLOAD_RETRY, attempts=args.retries + 1),
        progress=progress,
    )


async def run_download_command(args: argparse.Namespace) -> int:
    from connectors.history.download import download_to_file, replay_lines, summary_table

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    opts = options_from_args(args, None if args.quiet else say)
    result = await download_to_file(opts, args.out)
    print(summary_table(result.results))
    print(
        f"wrote {len(replay_lines(result.rows)) - 1} rows to {args.out} "
        f"({result.requests} requests)"
    )
    return 0
