"""Replay history files through the same engine, store and rule state as live operation.

Several files are one input merged by time (`connectors.history.file`). Ticks go to the
engine a chunk at a time; the input position (good rows taken from each file) is
checkpointed together with the engine snapshot, and an alert is committed with a checkpoint
taken after the chunk whose evaluation raised it (within `ALERT_COMMIT_EVERY`), in one
transaction. A replay killed at any moment and resumed with `--resume` therefore gives the
same alerts as one that ran through: none repeated, none missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import time
from bisect import bisect_right
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
from bot.engine.pages import PagesError
from bot.engine.rulefile import RuleSet
from bot.runtime.checkpoint import commit_engine
from bot.runtime.config import Config
from bot.store.redis_store import Store
from connectors.history.file import CHUNK, HistoryInput, Rejects

END = "end"
#: Alerts wait at most this long (wall time) for their commit, so a burst of alerts shares one
#: checkpoint. Exactly once either way: an alert is only ever committed with a checkpoint that
#: accounts for it, and one not yet committed is raised again by a resumed replay.
ALERT_COMMIT_EVERY = 0.2
POSITION_VERSION = 2  # in the fingerprint: a checkpoint of another position format is refused


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
    not_after: float | None = None  # rows later are "in the future" (default: wall time + 1d)


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
    h = hashlib.sha256(f"replay v{POSITION_VERSION}\n".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"{rules.fingerprint}|{start}|{end}".encode())
    return h.hexdigest()[:24]


async def run_replay(
    opts: ReplayOptions, config: Config, store: Store, rules: RuleSet
) -> ReplayResult:
    t0 = time.monotonic()
    files = [Path(f) for f in opts.files]
    fp = fingerprint(files, rules, opts.start, opts.end)
    engine = Engine.from_config(rules, config.engine, config.sessions)
    positions: tuple[int, ...] | None = None  # None: from the start
    done = False
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
            try:
                extra = engine.restore(cp.state, cp.pages)
            except PagesError as err:
                raise ResumeError(
                    f"the checkpoint in the store cannot be resumed: {err}; run again without "
                    "--resume to start over"
                ) from None
            positions = _parse_position(cp.position, len(files))
            done = positions is None
            ticks_read = int(extra.get("ticks_read", 0))
            where = "the end" if done else _describe(positions or (), files)
            resumed_from = f"{iso_utc(cp.clock)} ({where})"
    if resumed_from is None:
        await store.clear()

    rejects = Rejects()  # counted afresh: the reader checks the rows it skips too
    counted_from = ticks_read
    committed: list[Alert] = []  # what this run wrote to the outbox, in order

    async def commit(position: tuple[int, ...] | None, final: bool = False) -> None:
        alerts = engine.take_alerts()
        await commit_engine(
            store,
            engine,
            _format_position(position),
            fp,
            {"ticks_read": ticks_read},
            alerts,
        )
        committed.extend(alerts)
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
    # --rate paces a chunk at a time: small chunks keep a slow demo smooth
    size = CHUNK if not rate else max(1, min(CHUNK, int(rate / 20)))
    add = engine.add
    pending = engine.pending
    n = 0
    last_cp = last_progress = time.monotonic()
    with HistoryInput(files, rejects, not_after=opts.not_after) as inp:  # logs its notices
        chunks = () if done else inp.chunks(positions, size)
        for chunk in chunks:
            ts = chunk.ts
            if end is not None and ts[-1] > end:  # the last chunk: up to --to
                j = bisect_right(ts, end)
                for t, s, v in zip(ts[:j], chunk.symbols[:j], chunk.values[:j], strict=True):
                    add(t, s, v)
                n += j
                break
            for t, s, v in zip(ts, chunk.symbols, chunk.values, strict=True):
                add(t, s, v)
            n += len(ts)
            now = time.monotonic()
            since = now - last_cp
            if since >= opts.checkpoint_every or (
                pending and (since >= ALERT_COMMIT_EVERY or opts.on_alert is not None)
            ):
                ticks_read = counted_from + n
                await commit(chunk.positions)
                last_cp = now
            if opts.progress is not None and now - last_progress >= 1.0:
                last_progress = now
                _progress(opts.progress, engine, counted_from + n, n / max(now - t0, 1e-9))
            if rate:
                ahead = n / rate - (now - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            else:
                await asyncio.sleep(0)  # let other tasks run between chunks
        notes = inp.notices
    ticks_read = counted_from + n
    first_clock = max(engine.first_clock, opts.start or -math.inf)
    engine.queue(engine.finish())  # finish() hands over what is pending: commit it all
    await commit(None, final=True)
    elapsed = time.monotonic() - t0
    # A fresh replay's outbox holds what it committed (the store was cleared): no need to read
    # back and decode every alert with its chart; a resumed one also holds the earlier part.
    outbox = committed if resumed_from is None else [a for _, a in await store.alerts()]
    result = ReplayResult(
        ticks_read - counted_from,
        rejects,
        engine.stats,
        outbox,
        elapsed,
        resumed_from,
        notes=list(notes),
        span=max(engine.clock - first_clock, 0.0),
    )
    if engine.stats.usdx_partial:
        result.notes.append(
            f"dollar index USDX was computed without every FX leg at "
            f"{engine.stats.usdx_partial} points (weights renormalised)"
        )
    return result


def _format_position(pos: tuple[int, ...] | None) -> str:
    """`end`, or the good rows taken from each file: `rows:120,0,35`."""
    return END if pos is None else "rows:" + ",".join(map(str, pos))


def _parse_position(text: str, nfiles: int) -> tuple[int, ...] | None:
    if text == END:
        return None
    head, _, rest = text.partition(":")
    try:
        pos = tuple(int(x) for x in rest.split(","))
    except ValueError:
        pos = ()
    if head != "rows" or len(pos) != nfiles or min(pos) < 0:
        raise ResumeError(
            f"the checkpoint position {text!r} is not a position in these {nfiles} file(s)"
        )
    return pos


def _describe(pos: Sequence[int], files: Sequence[Path]) -> str:
    return ", ".join(f"{f.name} after {k:,} rows" for f, k in zip(files, pos, strict=True))


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
