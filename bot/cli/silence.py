"""`stressbot silence add|list|rm`: silences, as Alertmanager's (``amtool silence``).

A silence holds back every alert whose rule, pattern and severity match all its matchers
(``rule=btc_crash``, ``severity!=critical``, ``pattern=~rates.*``, ``rule!~feed:.*``; a regular
expression must match the whole value), from its start to its end, at every destination.
Telegram's ``/silence``, ``/silences``, ``/unsilence`` and ``/mute`` work on the same silences
(kept in Redis), so one set here shows in ``/status`` and the reverse.

Alerts a silence held back are acknowledged and recorded, not delivered when it ends (as in
Alertmanager); ``silence list --suppressed`` shows them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from typing import TYPE_CHECKING

from bot.cli.common import add_config_option

if TYPE_CHECKING:
    from bot.notify.silences import Silence, Suppressed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "silence",
        help="add, list or remove silences (matchers on rule, pattern and severity)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    acts = p.add_subparsers(dest="silence_action", required=True, metavar="ACTION")
    a = acts.add_parser("add", help="add a silence")
    a.add_argument("matchers", nargs="*", metavar="MATCHER", help="e.g. rule=btc_crash")
    a.add_argument("--all", action="store_true", help="no matchers: silence every alert")
    a.add_argument("--duration", metavar="DURATION", help="how long, e.g. 2h (default 1h)")
    a.add_argument("--start", metavar="TIME", help="ISO time, UTC unless an offset is given")
    a.add_argument("--end", metavar="TIME", help="ISO time (instead of --duration)")
    a.add_argument("--author", help="who sets it (default: the login name)")
    a.add_argument("--comment", default="", help="why")
    add_config_option(a)
    a.set_defaults(handler=_add)
    ls = acts.add_parser("list", help="the silences (active and pending; --expired too)")
    ls.add_argument("--expired", action="store_true", help="also those ended in the last 5 days")
    ls.add_argument("--suppressed", action="store_true", help="the alerts they held back")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    add_config_option(ls)
    ls.set_defaults(handler=_list)
    rm = acts.add_parser("rm", help="end silences by id (or a unique prefix of 4+ characters)")
    rm.add_argument("ids", nargs="+", metavar="ID")
    add_config_option(rm)
    rm.set_defaults(handler=_rm)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _time(text: str, flag: str) -> float:
    from bot.core.errors import StressbotError
    from bot.core.models import parse_iso_utc

    try:
        return parse_iso_utc(text)
    except ValueError:
        raise StressbotError(
            f"{flag}: expected a time like 2026-03-09T14:00:00Z, got {text!r}"
        ) from None


async def _add(args: argparse.Namespace) -> int:
    from bot.core.durations import parse_duration
    from bot.core.errors import StressbotError
    from bot.notify.silences import Matcher, Silences
    from bot.runtime.config import load_config
    from bot.store.connection import open_store

    matchers = [Matcher.parse(m) for m in args.matchers]
    if bool(matchers) == bool(args.all):
        raise StressbotError("silence add: give matchers (e.g. rule=btc_crash), or --all")
    if args.duration and args.end:
        raise StressbotError("silence add: give --duration or --end, not both")
    now = time.time()
    start = _time(args.start, "--start") if args.start else now
    end = _time(args.end, "--end") if args.end else start + parse_duration(args.duration or "1h")
    try:
        author = args.author or getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid
        author = ""
    config = load_config(args.config)
    async with open_store(config.redis) as (store, _):
        s = await Silences(store).add(
            matchers, starts=start, ends=end, author=author, comment=args.comment, now=now
        )
    print(f"{s.id}  {s.describe()}  from {_when(s.starts)} until {_when(s.ends)}")
    return 0


def _row(s: Silence, now: float) -> dict[str, object]:
    return {
        **s.to_json(),
        "startsAt": _when(s.starts),
        "endsAt": _when(s.ends),
        "created": _when(s.created),
        "state": s.state(now),
        "suppressed": s.suppressed,
    }


def _suppressed_row(x: Suppressed) -> dict[str, object]:
    return {
        "dest": x.dest,
        "alert_id": x.alert_id,
        "rule": x.rule,
        "severity": x.severity,
        "silence": x.silence,
        "at": _when(x.at),
        "summary": x.summary,
    }


async def _list(args: argparse.Namespace) -> int:
    from bot.notify.silences import Silences
    from bot.runtime.config import load_config
    from bot.store.connection import open_store

    config = load_config(args.config)
    now = time.time()
    async with open_store(config.redis) as (store, _):
        sil = Silences(store)
        every = [s for s in await sil.all(now) if args.expired or s.state(now) != "expired"]
        held = await sil.suppressed(1000) if args.suppressed else []
    if args.json:
        doc: dict[str, object] = {"silences": [_row(s, now) for s in every]}
        if args.suppressed:
            doc["suppressed"] = [_suppressed_row(x) for x in held]
        print(json.dumps(doc, indent=2))
        return 0
    if not every:
        print("no silences")
    for s in every:
        by = f" by {s.author}" if s.author else ""
        print(
            f"{s.id}  {s.state(now):<8} {s.describe()}  {_when(s.starts)} .. {_when(s.ends)}"
            f"{by}  held back {s.suppressed}" + (f"\n    {s.comment}" if s.comment else "")
        )
    if args.suppressed:
        print(f"\nsuppressed alerts (newest first): {len(held)}")
        for x in held:
            print(f"  {_when(x.at)}  {x.dest}  {x.alert_id}  silence {x.silence}  {x.summary}")
    return 0


async def _rm(args: argparse.Namespace) -> int:
    from bot.notify.silences import Silences
    from bot.runtime.config import load_config
    from bot.store.connection import open_store

    config = load_config(args.config)
    async with open_store(config.redis) as (store, _):
        gone = await Silences(store).remove(args.ids)
    for i in gone:
        print(f"removed {i}")
    missing = len(args.ids) - len(gone)
    if missing:
        print(f"{missing} of the ids given match no silence (or more than one)")
    return 0 if not missing else 1
