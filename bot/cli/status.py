"""`stressbot status`: the whole deployment at a glance, as the store holds it.

Rules with their state, since when pending or firing, when they last fired and the silence
holding them back, if any; every feed
with its state and, per symbol, who serves it (a feed whose process stopped reporting is shown
``no report`` and serves nothing, as in `stressbot feeds`); the engine leader and the engines
standing by; the outbox with, per destination, what is unacknowledged, unread and parked;
the silences (and mutes) active or still to start.
It reads what `/metrics` reads (:func:`bot.runtime.snapshot.read_snapshot`) and connects to no
market and no destination.

Times a person reads carry their zone: ``2026-12-02 12:40:05 UTC``; the header adds
``[display].timezone`` when it is not UTC. ``--json`` prints one object of the schema below
(``"schema": "stressbot.status/1"``; fields are only ever added under this name), every time
ISO 8601 UTC with a ``Z`` (``null`` when unknown), every duration in seconds:

    schema, generated_at
    rules[]:        rule, state (inactive|pending|firing), severity, pattern,
                    pending_since, firing_since, last_fired, silenced_by (the id of the
                    active silence matching the rule's labels, or null)
    feeds[]:        feed, kind, state (starting|ok|stale|down|closed|disabled|no report|-),
                    since, last_tick_age_s, report_age_s, ticks, errors, dropped{reason: n},
                    detail
    symbols[]:      symbol, mode (single|failover|median), serving[feed],
                    sources[]{feed, role (serving|standby|down|unavailable|skipped|disabled|
                    quiet)}
    engine:         leader (owner or null), fencing_token (int or null), state, standby[owner],
                    event_clock, lag_s (behind wall time), backlog_s (behind the newest tick),
                    input_lost[], last_heartbeat (the deadman's last beat)
    outbox:         length, destinations[]{destination, unacked, unread (null: unknown),
                    parked, failing_since, failures, error}
    silences[]:     id, kind (silence|mute), state (active|pending), matchers (text),
                    starts, ends, author, comment, suppressed

Exit status: 0 when the store was read, 2 when Redis cannot be reached (one line on stderr,
nothing on stdout).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.cli.common import add_config_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="rules, feeds, engine leader and outbox, as the running bot left them in Redis",
        description="Show every rule with its state, pending since and last fired; every feed "
        "with who is serving each symbol; the engine leader and standbys; the outbox and the "
        "parked alerts per destination.",
    )
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(handler=_status)


def _iso(ts: Any) -> str | None:
    from bot.core.models import iso_utc

    try:
        return None if ts is None else iso_utc(float(ts))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _when(ts: Any) -> str:
    iso = _iso(ts)
    return "-" if iso is None else iso.replace("T", " ").replace("Z", " UTC")


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def build_status(config: Any, snap: Any) -> dict[str, Any]:
    """The status document (the ``--json`` schema) of one snapshot."""
    from bot.cli.feeds import feed_rows, symbol_rows
    from bot.runtime.snapshot import report_expired

    rules = []
    for rid, st in sorted(snap.rules.items()):
        labels = {
            "rule": rid,
            "pattern": str(st.get("pattern") or ""),
            "severity": str(st.get("severity") or "").lower(),
        }
        silenced = [x for x in snap.silences if x.active(snap.now) and x.matches(labels)]
        rules.append(
            {
                "rule": rid,
                "state": str(st.get("state", "inactive")),
                "severity": st.get("severity"),
                "pattern": st.get("pattern"),
                "pending_since": _iso(st.get("pending_since")),
                "firing_since": _iso(st.get("firing_since")),
                "last_fired": _iso(st.get("last_sent")),
                "silenced_by": max(silenced, key=lambda x: x.ends).id if silenced else None,
            }
        )
    silences = [
        {
            "id": x.id,
            "kind": x.kind,
            "state": x.state(snap.now),
            "matchers": x.describe(),
            "starts": _iso(x.starts),
            "ends": _iso(x.ends),
            "author": x.author,
            "comment": x.comment,
            "suppressed": x.suppressed,
        }
        for x in snap.silences
    ]
    feeds = [
        {
            "feed": r["feed"],
            "kind": r["kind"],
            "state": r["state"],
            "since": _iso(r.get("since")),
            "last_tick_age_s": r.get("last_tick_age"),
            "report_age_s": r.get("report_age"),
            "ticks": r.get("ticks"),
            "errors": r.get("errors"),
            "dropped": r.get("dropped") or {},
            "detail": r.get("detail", ""),
        }
        for r in feed_rows(config, snap.feeds, snap.now)
    ]
    # a record its process stopped refreshing serves nothing: it is "down" for the symbols
    interval = config.feeds.status_interval
    live = {
        n: {**st, "state": "down", "serving": [], "standby": []}
        if report_expired(st, snap.now, interval)
        else st
        for n, st in snap.feeds.items()
    }
    symbols = [
        {
            "symbol": r["symbol"],
            "mode": r["mode"],
            "serving": list(r["serving"]),
            "sources": [{"feed": n, "role": tag} for n, tag in r["sources"]],
        }
        for r in symbol_rows(config, live)
    ]
    lease = snap.engine_lease
    token, _, owner = str(lease or "").partition(":")
    engine = {
        "leader": owner if lease else None,
        "fencing_token": int(token) if lease and token.isdigit() else None,
        "state": snap.engine.get("state") if snap.engine.get("fence") == lease else None,
        "standby": list(snap.engine_standby),
        "event_clock": _iso(snap.engine_clock),
        "lag_s": snap.engine_lag,
        "backlog_s": snap.engine_backlog,
        "input_lost": list(snap.engine.get("input_lost") or []),
        "last_heartbeat": _iso(snap.engine.get("heartbeat")),
    }
    dests = []
    for name, fig in snap.destinations.items():
        failures = _float(fig.outage.get("failures"))
        dests.append(
            {
                "destination": name,
                "unacked": fig.pending,
                "unread": fig.unread,
                "parked": fig.parked,
                "failing_since": _iso(_float(fig.outage.get("since"))),
                "failures": None if failures is None else int(failures),
                "error": fig.outage.get("error"),
            }
        )
    return {
        "schema": "stressbot.status/1",
        "generated_at": _iso(snap.now),
        "rules": rules,
        "feeds": feeds,
        "symbols": symbols,
        "engine": engine,
        "outbox": {"length": snap.outbox_length, "destinations": dests},
        "silences": silences,
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
        for r in rows
    )


def _secs(v: float | None) -> str:
    from bot.core.durations import format_duration

    if v is None:
        return "-"
    return f"{max(v, 0.0):.1f}s" if v < 10 else format_duration(v)


def format_status(doc: dict[str, Any], config: Any, snap: Any) -> str:
    from bot.cli.feeds import engine_line, feed_rows, format_symbols, format_table
    from bot.notify.format import fmt_times

    utc, loc = fmt_times(snap.now, config.display.timezone)
    out = [f"stressbot status at {utc}" + (f" · {loc}" if loc else "")]
    out.append("")
    if doc["rules"]:
        head = ["RULE", "STATE", "SEVERITY", "PENDING SINCE", "FIRING SINCE", "LAST FIRED"]
        rows = [[*head, "SILENCED BY"]]
        for r in doc["rules"]:
            rows.append(
                [
                    r["rule"],
                    r["state"],
                    str(r["severity"] or "-"),
                    _when(_ts(r["pending_since"])),
                    _when(_ts(r["firing_since"])),
                    _when(_ts(r["last_fired"])),
                    r["silenced_by"] or "",
                ]
            )
        out.append(_table(rows))
    else:
        out.append("rules: no rule has reported a state yet (is `stressbot run` running?)")
    out.append("")
    frows = feed_rows(config, snap.feeds, snap.now)
    if frows:
        out.append(format_table(frows, snap.now))
        out.append("")
        out.append(format_symbols(symbol_rows_of(doc)))
    else:
        out.append("feeds: none configured")
    out.append("")
    out.append(engine_line(snap.engine))
    e = doc["engine"]
    if e["event_clock"] is not None:
        out.append(
            f"engine event clock {_when(_ts(e['event_clock']))}: {_secs(e['lag_s'])} behind wall "
            f"time, {_secs(e['backlog_s'])} behind the newest tick"
        )
    if e["last_heartbeat"] is not None:
        beat = _ts(e["last_heartbeat"]) or snap.now
        out.append(f"engine heartbeat {_when(beat)} ({_secs(snap.now - beat)} ago)")
    out.append("")
    ob = doc["outbox"]
    out.append(f"outbox: {ob['length']} alert(s)")
    if ob["destinations"]:
        rows = [["DESTINATION", "UNACKED", "UNREAD", "PARKED", "DELIVERY"]]
        for d in ob["destinations"]:
            state = "ok"
            if d["failing_since"]:
                state = (
                    f"failing since {_when(_ts(d['failing_since']))} ({d['failures'] or '?'} "
                    f"failure(s)): {str(d['error'] or '')[:80]}"
                )
            unread = "-" if d["unread"] is None else str(d["unread"])
            rows.append([d["destination"], str(d["unacked"]), unread, str(d["parked"]), state])
        out.append(_table(rows))
        if any(d["parked"] for d in ob["destinations"]):
            out.append("parked alerts: `stressbot deadletters list` shows them, `retry` resends")
    out.append("")
    if doc["silences"]:
        rows = [["SILENCE", "STATE", "FROM", "UNTIL", "SUPPRESSED", "MATCHERS (by, comment)"]]
        for x in doc["silences"]:
            by = ", ".join(v for v in (x["author"], x["comment"]) if v)
            rows.append(
                [
                    x["id"],
                    x["state"] if x["kind"] == "silence" else f"{x['state']} (mute)",
                    _when(_ts(x["starts"])),
                    _when(_ts(x["ends"])),
                    str(x["suppressed"]),
                    x["matchers"] + (f" ({by[:80]})" if by else ""),
                ]
            )
        out.append(_table(rows))
    else:
        out.append("silences: none")
    return "\n".join(out)


def symbol_rows_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The symbol rows of `format_symbols` from the document's symbols."""
    return [
        {
            "symbol": s["symbol"],
            "mode": s["mode"],
            "serving": s["serving"],
            "sources": [(x["feed"], x["role"]) for x in s["sources"]],
        }
        for s in doc["symbols"]
    ]


def _ts(iso: str | None) -> float | None:
    from bot.core.models import parse_iso_utc

    return None if iso is None else parse_iso_utc(iso)


async def _status(args: argparse.Namespace) -> int:
    import orjson

    from bot.runtime.config import load_config
    from bot.runtime.snapshot import read_snapshot
    from bot.store.connection import open_store

    config = load_config(args.config)
    async with open_store(config.redis) as (store, _):
        snap = await read_snapshot(store, destinations=config.notify.destination_names)
    if not snap.redis_up:
        print(f"stressbot: {snap.error}; is Redis running (REDIS_URL)?", file=sys.stderr)
        return 2
    doc = build_status(config, snap)
    if args.json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(doc, config, snap))
    return 0
