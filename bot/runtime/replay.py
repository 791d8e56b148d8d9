"""Replay history files through the same engine, store and rule state as live operation.

The input position (file, row) is checkpointed together with the engine snapshot; an alert
is committed with the checkpoint just after the tick whose evaluation raised it. A replay
killed at any moment and resumed with `--resume` therefore gives the same alerts as one that
ran through: none repeated, none missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import orjson

from bot.core.errors import ResumeError
from bot.core.models import Alert, AlertKind, iso_utc
from bot.engine.engine import Engine, EngineStats
from bot.engine.rulefile import RuleSet
from bot.runtime.config import Config
from bot.store.redis_store import Checkpoint, Store
from connectors.history.file import Rejects, read_history

END = "end"


@dataclass
class ReplayOptions:
    files: Sequence[Path]
    start: float | None = None  # --from: earlier ticks only warm the windows
    end: float | None = None  # --to
    resume: bool = False
    rate: float | None = None  # ticks per second at most (watchable demos); None = flat out
    checkpoint_every: float = 5.0  # wall seconds
    progress: TextIO | None = None
    on_alert: Callable[[Alert], None] | None = None


@dataclass
class ReplayResult:
    ticks_read: int
    rejects: Rejects
    stats: EngineStats
    alerts: list[Alert]  # every alert in the outbox of this replay, resumed parts included
    elapsed: float
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)
    span: float = 0.0  # seconds of event time covered by the replay

    @property
    def ticks_per_second(self) -> float:
        return self.ticks_read / self.elapsed if self.elapsed > 0 else 0.0


def fingerprint(
    files: Sequence[Path], rules: RuleSet, start: float | None, end: float | None
) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"{rules.fingerprint}|{start}|{end}".encode())
    return h.hexdigest()[:24]


async def run_replay(
    opts: ReplayOptions, config: Config, store: Store, rules: RuleSet
) -> ReplayResult:
    files = [Path(f) for f in opts.files]
    fp = fingerprint(files, rules, opts.start, opts.end)
    engine = Engine.from_config(rules, config.engine, config.sessions)
    rejects = Rejects()
    pos = (0, 0)
    ticks_read = 0
    resumed_from = None
    if opts.resume:
        cp = await store.load_checkpoint()
        if cp is not None:
            if cp.fingerprint != fp:
                raise ResumeError(
                    "the checkpoint in the store belongs to another replay (different files, "
                    "rules or --from/--to); run again without --resume to start over"
                )
            extra = engine.restore(cp.state)
            pos = _parse_position(cp.position, len(files))
            ticks_read = int(extra.get("ticks_read", 0))
            for reason, n in extra.get("rejects", {}).items():
                rejects.counts[reason] = n
            rejects.examples = extra.get("reject_examples", {})
            resumed_from = f"{iso_utc(cp.clock)} (file {pos[0] + 1}, row {pos[1] + 1})"
    if resumed_from is None:
        await store.clear()

    t0 = time.monotonic()
    last_cp = t0
    last_progress = t0
    counted_from = ticks_read

    async def commit(position: tuple[int, int], final: bool = False) -> None:
        alerts = engine.take_alerts()
        extra = {
            "ticks_read": ticks_read,
            "rejects": dict(rejects.counts),
            "reject_examples": rejects.examples,
        }
        await store.commit(
            Checkpoint(
                _format_position(position, len(files)),
                fp,
                max(engine.clock, 0.0),
                engine.snapshot(extra),
            ),
            alerts,
            rule_states=engine.rule_states(),
            latest=engine.latest(),
        )
        if final:  # recent history for /status and /chart after the replay
            keep = engine.clock - engine.chart_retention()
            await store.add_series(engine.points_since({}, not_before=keep), keep)
        if opts.on_alert:
            for a in alerts:
                opts.on_alert(a)

    end = opts.end
    if opts.start is not None:
        engine.evaluate_from = opts.start
    rate = opts.rate
    add = engine.add
    pending = engine.pending
    n = 0
    for n, (fi, ri, ts, sym, value) in enumerate(read_history(files, rejects, start=pos), 1):
        if end is not None and ts > end:
            n -= 1
            break
        add(ts, sym, value)
        if pending:
            ticks_read = counted_from + n
            await commit((fi, ri + 1))
            last_cp = time.monotonic()
        if n & 4095 == 0 or rate:
            ticks_read = counted_from + n
            now = time.monotonic()
            if now - last_cp >= opts.checkpoint_every:
                await commit((fi, ri + 1))
                last_cp = now
            if opts.progress is not None and now - last_progress >= 1.0:
                last_progress = now
                _progress(opts.progress, engine, ticks_read, n / max(now - t0, 1e-9))
            if rate:
                ahead = n / rate - (now - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            else:
                await asyncio.sleep(0)  # let other tasks run between chunks
    ticks_read = counted_from + n
    first_clock = max(engine.first_clock, opts.start or -math.inf)
    engine.finish()
    await commit((len(files), 0), final=True)
    elapsed = time.monotonic() - t0
    outbox = [a for _, a in await store.alerts()]
    result = ReplayResult(
        ticks_read - counted_from,
        rejects,
        engine.stats,
        outbox,
        elapsed,
        resumed_from,
        span=max(engine.clock - first_clock, 0.0),
    )
    if engine.stats.usdx_partial:
        result.notes.append(
            f"dollar index USDX was computed without every FX leg at "
            f"{engine.stats.usdx_partial} points (weights renormalised)"
        )
    return result


def _format_position(pos: tuple[int, int], nfiles: int) -> str:
    return END if pos[0] >= nfiles else f"{pos[0]}:{pos[1]}"


def _parse_position(text: str, nfiles: int) -> tuple[int, int]:
    if text == END:
        return (nfiles, 0)
    try:
        f, r = text.split(":")
        return int(f), int(r)
    except ValueError as e:
        raise ResumeError(f"the checkpoint position {text!r} is not a replay position") from e


def _progress(out: TextIO, engine: Engine, ticks: int, tps: float) -> None:
    day = datetime.fromtimestamp(engine.clock, UTC).strftime("%Y-%m-%d %H:%M UTC")
    fired = sum(engine.stats.alerts.values())
    out.write(f"  ... {day}  {ticks:,} ticks  {tps:,.0f} ticks/s  {fired} alerts\n")
    out.flush()


def write_jsonl(alerts: Sequence[Alert], path: Path) -> None:
    with path.open("wb") as fh:
        for a in alerts:
            fh.write(orjson.dumps(a.to_json()) + b"\n")


def format_alert_line(a: Alert, zone: str = "UTC") -> str:
    """One readable line for a terminal: time in UTC and in the display zone."""
    dt = datetime.fromtimestamp(a.ts, UTC)
    when = dt.strftime("%Y-%m-%d %H:%M UTC")
    if zone != "UTC":
        local = dt.astimezone(ZoneInfo(zone))
        when += local.strftime(f" ({'%H:%M %Z'} {zone})")
    mark = "RESOLVED" if a.kind is AlertKind.RESOLVED else a.severity.upper()
    return f"{when}  {mark:<8}  {a.rule}: {a.summary}"


def print_summary(r: ReplayResult, out: TextIO = sys.stdout) -> None:
    p = out.write
    p("\nReplay summary\n")
    if r.resumed_from:
        p(f"  resumed from      {r.resumed_from}\n")
    p(f"  ticks read        {r.ticks_read:,}\n")
    p(f"  ticks rejected    {r.rejects.total:,}\n")
    for reason, n in r.rejects.counts.most_common():
        examples = "; ".join(r.rejects.examples.get(reason, [])[:3])
        p(f"    {reason:<22}{n:>8,}   e.g. {examples}\n")
    s = r.stats
    for label, v in (
        ("late (re-ordered)", s.late),
        ("duplicate times", s.duplicates),
        ("wild prints dropped", s.wild_prints),
        ("older than history", s.too_old),
    ):
        if v:
            p(f"  {label:<18}{v:>8,}\n")
    firing = [a for a in r.alerts if a.kind is AlertKind.FIRING]
    p(f"  alerts            {len(firing)}\n")
    by_rule: dict[str, int] = {}
    for a in firing:
        by_rule[a.rule] = by_rule.get(a.rule, 0) + 1
    for rule, n in sorted(by_rule.items()):
        p(f"    {rule:<22}{n:>8}\n")
    if firing and r.span > 0:
        days = {datetime.fromtimestamp(a.ts, UTC).date() for a in firing}
        months = r.span / (30.44 * 86400)
        p(
            f"  alert-days        {len(days)} in {months:.1f} months "
            f"({len(days) / months:.2f} a month)\n"
        )
    for rule, n in sorted(s.absorbed.items()):
        p(f"    ({rule}: {n} more episode(s) inside the cooldown, not sent)\n")
    p(f"  elapsed           {r.elapsed:.2f} s\n")
    p(f"  throughput        {r.ticks_per_second:,.0f} ticks/s\n")
    for note in r.notes:
        p(f"  note: {note}\n")
