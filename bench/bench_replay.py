"""Replay throughput on the 2019-2021 dev file with the default rules, one core.

    python bench/bench_replay.py [FILE ...] [--repeat N]

Each figure is the best of N runs in ticks per second, by wall time and by this process's
CPU time (on a machine shared with other work the CPU figure is the one-core speed; the
Redis server's own CPU is not in it); the runs of the different paths alternate, so a noisy
machine slows them alike:

  baseline  a plain read-and-parse loop over the same file: gzip, split, fromisoformat, float;
            no checks and no engine (what any Python reader of the file costs)
  reader    `HistoryInput`: reading, validating, the order check, columns (what replay reads)
  engine    rows already parsed, only Engine.add and evaluation (the rule engine's own speed)
  replay    the full `stressbot replay` path: reader, engine, checkpoints and outbox in Redis
            (the Redis at REDIS_URL, else the embedded store; which one is printed)

and the ratio replay / baseline (each by wall and by CPU time), against the 300,000 ticks/s
the replay should reach (issue 8). Several files are replayed merged by time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

from bot.engine.engine import Engine
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.replay import ReplayOptions, run_replay
from bot.store.connection import connect, redis_url
from bot.store.redis_store import Store
from connectors.history.file import HistoryInput

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared/data/history/dev-2019-2021.csv.gz"


def plain_read(files: list[Path]) -> int:
    """The baseline: read and parse every row, nothing else."""
    n = 0
    fromiso = datetime.fromisoformat
    for f in files:
        fh: IO[str] = gzip.open(f, "rt") if f.suffix == ".gz" else f.open()  # noqa: SIM115
        with fh:
            next(fh)
            for line in fh:
                ts, _sym, value = line.split(",")
                fromiso(ts).timestamp()
                float(value)
                n += 1
    return n


TARGET = 300_000  # ticks/s, the full replay path on one core (issue 8)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*", type=Path, default=[DEFAULT])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    files: list[Path] = args.files
    logging.disable(logging.WARNING)
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    with HistoryInput(files) as inp:
        rows = [
            (t, s, v)
            for c in inp.chunks()
            for t, s, v in zip(c.ts, c.symbols, c.values, strict=True)
        ]
    n = len(rows)
    names = ", ".join(f.name for f in files)
    print(
        f"{names}: {n:,} ticks, {len(rules.rules)} rules, best of {args.repeat} runs, "
        f"one core (CPython {sys.version.split()[0]})"
    )

    def reader() -> None:
        with HistoryInput(files) as inp:
            for c in inp.chunks():
                for _ in zip(c.ts, c.symbols, c.values, strict=True):
                    pass

    def engine_only() -> None:
        e = Engine.from_config(rules, config.engine, config.sessions)
        add = e.add
        for ts, s, v in rows:
            add(ts, s, v)
        e.finish()

    conn = await connect(redis_url(None), allow_embedded=True)
    embedded = conn.embedded
    store = Store(conn.redis, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}

    def keep(name: str, t: tuple[float, float]) -> None:
        best[name] = min(best.get(name, t[0]), t[0])
        best_cpu[name] = min(best_cpu.get(name, t[1]), t[1])

    try:
        for _ in range(args.repeat):
            keep("baseline", timed(lambda: plain_read(files)))
            keep("reader", timed(reader))
            keep("engine", timed(engine_only))
            t0, c0 = time.perf_counter(), time.process_time()
            await run_replay(ReplayOptions(files=files), config, store, rules)
            keep("replay", (time.perf_counter() - t0, time.process_time() - c0))
    finally:
        await store.clear()
        await conn.close()
    labels = {
        "baseline": "baseline (plain read-and-parse loop)",
        "reader": "reader (read, validate, order)",
        "engine": "engine only (rows parsed)",
        "replay": "full replay (reader, engine, " + ("embedded store)" if embedded else "Redis)"),
    }
    print(f"  {'':<42} {'wall':>10}          {'CPU':>10}")
    for name, label in labels.items():
        t, c = best[name], best_cpu[name]
        print(
            f"  {label:<42} {n / t:>10,.0f} ticks/s  {n / c:>10,.0f} ticks/s  "
            f"({t * 1000:,.0f} / {c * 1000:,.0f} ms)"
        )
    ratio, ratio_cpu = best["baseline"] / best["replay"], best_cpu["baseline"] / best_cpu["replay"]
    print(f"  {'ratio full replay / baseline':<42} {ratio:>10.2f}          {ratio_cpu:>10.2f}")
    got = n / best_cpu["replay"]
    print(
        f"  {'target ' + f'{TARGET:,}' + ' ticks/s (full replay, CPU)':<42} "
        f"{got / TARGET:>10.0%} of it" + ("" if got >= TARGET else " (not reached)")
    )


if __name__ == "__main__":
    asyncio.run(main())
