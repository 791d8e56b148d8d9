"""`stressbot deadletters list|retry|drop`: the alerts parked for each destination.

An alert is parked when its destination kept failing past ``notify.delivery.retry_horizon``
(reason "outage"), refused messages as a whole ("unavailable": bot removed, token or webhook
refused), or refused that message ("rejected"). Outage and unavailable alerts are redelivered
by the notifier as soon as the destination accepts messages again; these commands show every
parked alert, ask for a redelivery now (``retry``: the running notifier takes them within
seconds, or ``stressbot notify drain`` does), or give alerts up for good (``drop``: marked
dropped and logged, never sent). Nothing here sends anything itself.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from bot.cli.common import add_config_option

if TYPE_CHECKING:
    from bot.notify.ledger import Ledger, Parked


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deadletters",
        help="list, redeliver or drop the alerts parked for a destination",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["list", "retry", "drop"])
    p.add_argument("dest", nargs="?", help="destination name (retry, drop; list: only this one)")
    p.add_argument("ids", nargs="*", metavar="ALERT_ID", help="alert ids (retry, drop)")
    p.add_argument("--all", action="store_true", help="every parked alert of the destination")
    p.add_argument("--json", action="store_true", help="list: one JSON array")
    add_config_option(p, required=True)
    p.set_defaults(handler=_deadletters)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _row(p: Parked) -> dict[str, object]:
    a = p.alert
    return {
        "dest": p.dest,
        "alert_id": p.alert_id,
        "reason": p.reason,
        "parked_at": _when(p.at),
        "tries": p.tries,
        "retry_asked": p.retry,
        "error": p.error,
        "rule": a.rule if a else None,
        "severity": a.severity if a else None,
        "summary": a.summary if a else None,
        "outbox_entry": p.entry,
    }


async def _deadletters(args: argparse.Namespace) -> int:
    from bot.core.errors import ConfigError
    from bot.notify.ledger import Ledger
    from bot.runtime.config import load_config
    from bot.store.connection import open_store

    config = load_config(args.config)
    n = config.notify
    dests = [c.name for c in n.telegram.chats] + [w.name for w in n.discord.webhooks]
    if args.dest is not None and args.dest not in dests:
        known = ", ".join(dests) or "none configured"
        raise ConfigError(f"unknown destination {args.dest!r} (destinations: {known})")
    if args.action != "list":
        if args.dest is None:
            raise ConfigError(f"deadletters {args.action}: name the destination")
        if bool(args.ids) == bool(args.all):
            raise ConfigError(f"deadletters {args.action}: give alert ids, or --all")
    async with open_store(config.redis) as (store, _):
        ledger = Ledger(store)
        if args.action == "list":
            return await _list(ledger, [args.dest] if args.dest else dests, as_json=args.json)
        ids: list[str] | None = None if args.all else list(args.ids)
        if args.action == "retry":
            k = await ledger.request_retry(args.dest, ids)
            print(
                f"asked for a redelivery of {k} parked alert(s) to {args.dest}; a running "
                "notifier takes them within seconds (or run: stressbot notify drain)"
            )
        else:
            if ids is None:
                ids = [p.alert_id for p in await ledger.parked(args.dest)]
            k = await ledger.drop(args.dest, ids, why="dropped by an operator")
            print(f"dropped {k} parked alert(s) of {args.dest}")
        missing = 0 if ids is None else len(ids) - k
        if missing:
            print(f"{missing} of the alert ids given are not parked for {args.dest}")
        return 0 if k or (ids is None) else 1


async def _list(ledger: Ledger, dests: list[str], *, as_json: bool) -> int:
    rows = [p for d in dests for p in await ledger.parked(d)]
    if as_json:
        print(json.dumps([_row(p) for p in rows], indent=2))
        return 0
    if not rows:
        print("no parked alerts")
        return 0
    for d in dests:
        mine = [p for p in rows if p.dest == d]
        if not mine:
            continue
        print(f"{d}: {len(mine)} parked")
        for p in mine:
            asked = ", redelivery asked" if p.retry else ""
            print(
                f"  {p.alert_id}  {p.reason}  parked {_when(p.at)}  {p.tries} tries{asked}\n"
                f"      {p.error[:200]}"
            )
    return 0
