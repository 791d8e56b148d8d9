"""`stressbot feeds`: every configured feed with its state, last tick age and counters.

Reads the health records the running bot writes to Redis (``{prefix}:feeds``) on every state
change and every `feeds.status_interval`; it does not connect to any market itself. Counts
and the last tick's age are as of the report, whose age is shown (REPORTED).

A second table lists each canonical symbol with the feed serving it now (the first live
source in its priority order, ``[feeds.combine]`` or the order of the feeds in the config;
all live ones for a median) and its other sources with why they are not serving: standby,
down, stale, "unavailable here" (the source refuses this location: HTTP 451/403), skipped
(the venue does not offer that instrument to this account), disabled.

A record not refreshed for ``max(3 * feeds.status_interval, 30 s)`` (every record carries
``updated``, the reporter's wall time) is shown as state ``no report`` ("no report for 2m (is
`stressbot run` running?)"), never as the stale "ok" of a process that is gone, and makes the
command exit 1 like a stale or down feed. When the tick writer could not reach Redis, the
detail says how many ticks it held and dropped (``writer`` in the record).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "feeds",
        help="list the configured feeds with their health",
        description="List every configured feed with its state (starting, ok, stale, down, "
        "closed), how long it has been so, the age of its last tick, and its message, tick, "
        "error and dropped counts, as last reported by the running bot.",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="config file (TOML)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(handler=_feeds)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from bot.core.durations import format_duration

    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    return format_duration(seconds)


def _symbols(syms: list[str], show: int = 3) -> str:
    more = len(syms) - show
    return ",".join(syms[:show]) + (f" +{more}" if more > 0 else "")


def feed_rows(config: Any, statuses: dict[str, dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """One row per configured feed (then any reported feed no longer in the config)."""
    from bot.runtime.snapshot import stale_report_after

    rows: list[dict[str, Any]] = []
    stale_report = stale_report_after(config.feeds.status_interval)
    names = list(config.feeds.sources) + [n for n in statuses if n not in config.feeds.sources]
    for name in names:
        fc = config.feeds.sources.get(name)
        st = statuses.get(name)
        row: dict[str, Any] = {
            "feed": name,
            "kind": fc.kind if fc is not None else str((st or {}).get("kind", "?")),
            "symbols": _symbols(list(dict.fromkeys(fc.symbols.values()))) if fc else "",
        }
        if fc is not None and not fc.enabled:
            row.update(state="disabled", detail="enabled = false in the config")
        elif st is None:
            row.update(state="-", detail="no report yet (is `stressbot run` running?)")
        else:
            updated = float(st.get("updated") or now)
            lag = now - updated
            age = st.get("last_tick_age")
            row.update(
                state=str(st.get("state")),
                since=float(st.get("since") or updated),
                last_tick_age=None if age is None else float(age),  # when reported
                last_tick_ts=st.get("last_tick_ts"),
                msgs=int(st.get("msgs", 0)),
                ticks=int(st.get("ticks", 0)),
                errors=int(st.get("errors", 0)),
                dropped=dict(st.get("dropped") or {}),
                detail=str(st.get("detail") or ""),
                report_age=lag,
                serving=list(st.get("serving") or []),
                unavailable=bool(st.get("unavailable")),
            )
            w = st.get("writer") or {}
            if w.get("buffered") or w.get("overflow"):
                row["detail"] = (
                    f"(Redis writes failing: {int(w.get('buffered', 0)):,} tick(s) buffered, "
                    f"{int(w.get('overflow', 0)):,} dropped) " + row["detail"]
                )
            if fc is None:
                row["detail"] = "(not in the config) " + row["detail"]
            if lag > stale_report:
                row["reported_state"] = row["state"]
                row["state"] = "no report"
                row["detail"] = (
                    f"no report for {_age(lag)} (is `stressbot run` running?); last said "
                    f"{row['reported_state']}" + (f": {row['detail']}" if row["detail"] else "")
                )
        rows.append(row)
    return rows


def engine_line(status: dict[str, Any]) -> str:
    """Which engine is active (holds the engine lease) and how many stand by."""
    if not status:
        return "engine: no report yet (is `stressbot run` running?)"
    lease = status.get("lease")
    standby = list(status.get("standby") or [])
    more = f"; {len(standby)} standing by ({', '.join(standby)})" if standby else "; no standby"
    if lease is None:
        return "engine: NO ACTIVE ENGINE (the engine lease is free)" + more
    token, _, owner = str(lease).partition(":")
    # the record is the current leader's when it was written under the current lease
    state = str(status.get("state") or "?") if status.get("fence") == lease else "taking over"
    line = f"engine: leader {owner} (fencing token {token}, {state})" + more
    return line + "".join(f"\n{lost}" for lost in input_lost_lines(status))


def input_lost_lines(status: dict[str, Any]) -> list[str]:
    """The spans of input the engine reported missing (ticks trimmed from the stream before it
    applied them, e.g. after a long downtime): no window compares across them."""
    out = []
    for r in status.get("input_lost") or []:
        n = r.get("lost")
        what = f"{n:,} tick(s)" if isinstance(n, int) else "ticks"
        out.append(
            f"input lost: {what} from {r.get('from', '?')} to {r.get('to', '?')} "
            f"(noticed {r.get('detected', '?')}: {r.get('reason', '')})"
        )
    return out


def _priority(config: Any) -> dict[str, list[str]]:
    """Canonical symbol -> its feeds in priority order (combine sources first, then the rest
    in the order the feeds are configured)."""
    out: dict[str, list[str]] = {}
    for name, fc in config.feeds.sources.items():
        for sym in dict.fromkeys(fc.symbols.values()):
            out.setdefault(sym, []).append(name)
    for sym, names in out.items():
        comb = config.feeds.combine.get(sym)
        if comb is not None and comb.sources:
            out[sym] = list(comb.sources) + [n for n in names if n not in comb.sources]
    return out


def symbol_rows(config: Any, statuses: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per canonical symbol: who serves it now and what each other source is doing."""
    rows: list[dict[str, Any]] = []
    for sym, names in _priority(config).items():
        comb = config.feeds.combine.get(sym)
        mode = comb.mode if comb is not None else ("failover" if len(names) > 1 else "single")
        row: dict[str, Any] = {"symbol": sym, "mode": mode, "sources": []}
        for key in ("serving", "standby", "down", "unavailable", "skipped", "disabled", "quiet"):
            row[key] = []
        for name in names:
            fc = config.feeds.sources[name]
            st = statuses.get(name)
            skipped = {fc.symbols.get(v) for v in ((st or {}).get("skipped") or {})}
            if not fc.enabled:
                tag = "disabled"
            elif st is None:
                tag = "quiet"
            elif sym in (st.get("serving") or []):
                tag = "serving"
            elif sym in skipped:
                tag = "skipped"
            elif st.get("unavailable"):
                tag = "unavailable"
            elif st.get("state") in ("down", "stale"):
                tag = "down"
            elif sym in (st.get("standby") or []):
                tag = "standby"
            else:
                tag = "quiet"
            row[tag].append(name)
            row["sources"].append((name, tag))
        rows.append(row)
    return rows


_TAGS = {
    "standby": "standby",
    "down": "down",
    "unavailable": "unavailable here",
    "skipped": "not offered to this account",
    "disabled": "disabled",
    "quiet": "no data yet",
}


def format_symbols(rows: list[dict[str, Any]]) -> str:
    table = [["SYMBOL", "SERVED BY", "SOURCES (priority order)"]]
    for r in rows:
        served = ",".join(r["serving"]) or "NONE"
        if r["mode"] == "median" and len(r["serving"]) > 1:
            served = f"median({served})"
        others = [
            name if tag == "serving" else f"{name} ({_TAGS[tag]})" for name, tag in r["sources"]
        ]
        table.append([r["symbol"], served, ", ".join(others)])
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]).rstrip()
        for row in table
    )


def format_table(rows: list[dict[str, Any]], now: float) -> str:
    head = [
        "FEED",
        "KIND",
        "SYMBOLS",
        "STATE",
        "FOR",
        "LAST TICK",
        "REPORTED",
        "MSGS",
        "TICKS",
        "ERRORS",
        "DROPPED",
        "DETAIL",
    ]
    table = [head]
    for r in rows:
        dropped = r.get("dropped") or {}
        table.append(
            [
                r["feed"],
                r["kind"],
                r["symbols"],
                r["state"],
                _age(now - r["since"]) if "since" in r else "-",
                _age(r.get("last_tick_age")) if r.get("last_tick_age") is not None else "-",
                f"{_age(r['report_age'])} ago" if "report_age" in r else "-",
                str(r.get("msgs", "-")),
                str(r.get("ticks", "-")),
                str(r.get("errors", "-")),
                ",".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "-",
                str(r.get("detail", ""))[:80],
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = []
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


async def _feeds(args: argparse.Namespace) -> int:
    import orjson

    from bot.runtime.config import load_config
    from bot.store.connection import open_store

    config = load_config(args.config)
    async with open_store(config.redis) as (store, _):
        statuses = await store.feed_statuses()
        engine = await store.engine_status()
    now = time.time()
    rows = feed_rows(config, statuses, now)
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        print("no feeds configured (add [feeds.sources.<name>] tables, see config.example.toml)")
    else:
        print(format_table(rows, now))
        print()
        print(format_symbols(symbol_rows(config, statuses)))
    if not args.json:
        print()
        print(engine_line(engine))
    unhealthy = [r for r in rows if r["state"] in ("stale", "down", "no report")]
    return 1 if unhealthy else 0
