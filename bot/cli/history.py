"""`stressbot history download`: the argparse command that builds a replay file.

Only argparse and the defaults load at start-up; the download itself
(:mod:`connectors.history.download`) and the sources load when the command runs. The command
ends with two tables, per symbol and per source (rows, chunks from the cache and fetched,
what failed and why), and exits 0 when every symbol was filled, 2 when some were not (the
file is written with the others), 1 when nothing could be fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.history.common import (
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
        help="build a replay file from public keyless sources",
        description=(
            "Build a replay file (ts,symbol,value; ts = when each value became known) from "
            "public keyless sources: US Treasury par yields, the NY Fed (SOFR), the Federal "
            "Reserve Board (IORB, H.10 FX), ECB reference rates, Dukascopy's hourly FX, metals "
            "and index CFDs, Yahoo Finance daily closes, and exchange hourly bars through ccxt. "
            "Each symbol comes from the first of its sources that answers; a failing source "
            "is reported and its symbols go to the next. With FRED_API_KEY set the FRED API is "
            "the last resort. Fetched chunks are cached, so a re-run fetches nothing new and "
            "an interrupted run resumes."
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
        help="symbols to include (default: all: BTC/USD XAU/USD XAG/USD EUR/USD USD/JPY "
        "GBP/USD USD/CAD USD/CHF USD/SEK DXY US2Y US10Y US30Y SOFR IORB SPX NDX N225 VIX)",
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
        "--source",
        action="append",
        metavar="SYMBOL=SRC[,SRC...]",
        help="the sources to try for a symbol, in order, e.g. US10Y=treasury,fred or "
        "SPX=dukascopy (sources: treasury nyfed frb frb_h10 ecb dukascopy yahoo fred "
        "fred_csv, or a ccxt exchange id)",
    )
    p.add_argument(
        "--source-url",
        action="append",
        metavar="SOURCE=URL",
        help="base URL of a source (mirrors, proxies, local servers), e.g. "
        "yahoo=http://127.0.0.1:8080",
    )
    p.add_argument(
        "--fred-url",
        default=None,
        metavar="URL",
        help="endpoint of FRED's keyless CSV, the opt-in source fred_csv (it answers 403 "
        "to programmatic clients since 2026-05-30)",
    )
    p.add_argument(
        "--market",
        action="append",
        metavar="SYMBOL=EXCHANGE:MARKET",
        help="take a symbol from this exchange market, e.g. XAU/USD=kraken:PAXG/USD (its "
        "only source unless --source names others; the defaults are in the README's source "
        "matrix). Append @ohlcv or @trades to force how bars are made; by default Kraken "
        "months older than its latest 720 bars are built from trades",
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
    from connectors.history.ohlc import MarketSpec

    markets = {s: MarketSpec.parse(spec) for s, spec in _pairs(args.market, "--market").items()}
    sources = {
        s: [x.strip() for x in order.split(",") if x.strip()]
        for s, order in _pairs(args.source, "--source").items()
    }
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
        source_urls=_pairs(args.source_url, "--source-url"),
        sources=sources,
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
    from connectors.history.download import (
        download,
        source_table,
        summary_table,
        write_replay,
    )

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    opts = options_from_args(args, None if args.quiet else say)
    result = await download(opts)
    print(summary_table(result.results))
    print()
    print(source_table(result.reports))
    if not result.rows:
        why = "no network: no source could be reached" if result.offline else "no data"
        print(f"stressbot: {why}; nothing written to {args.out}", file=sys.stderr)
        return 1
    n = await asyncio.to_thread(write_replay, result.rows, args.out)
    print(f"wrote {n} rows to {args.out} ({result.requests} requests)")
    if result.missing:
        print(
            f"stressbot: no source had {', '.join(result.missing)} (see the tables above); "
            "the file has the other symbols",
            file=sys.stderr,
        )
        return 2
    return 0
