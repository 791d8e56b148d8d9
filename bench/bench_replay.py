"""Replay throughput on the 2019-2021 dev file with the default rules, one core.

    python bench/bench_replay.py [FILE ...] [--repeat N]

Each figure is the best of N runs in ticks per second; the runs of the different paths
alternate, so a noisy machine slows them alike:

  baseline  a plain read-and-parse loop over the same file: gzip, split, fromisoformat, float;
            no checks and no engine (what any Python reader of the file costs)
  reader    `HistoryInput`: reading, validating, the order check, columns (what replay reads)
  engine    rows already parsed, only Engine.add and evaluation (the rule engine's own speed)
  replay    the full `stressbot replay` path: reader, engine, checkpoints and outbox in Redis
            (the Redis at REDIS_URL, else the embedded store; which one is printed)

and the ratio replay / baseline. Several files are replayed merged by time.
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


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


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

    redis, embedded = await connect(redis_url(None), allow_embedded=True)
    store = Store(redis, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    best: dict[str, float] = {}

    def keep(name: str, t: float) -> None:
        best[name] = min(best.get(name, t), t)

    try:
        for _ in range(args.repeat):
            keep("baseline", timed(lambda: plain_read(files)))
            keep("reader", timed(reader))
            keep("engine", timed(engine_only))
            t0 = time.perf_counter()
            await run_replay(ReplayOptions(files=files), config, store, rules)
            keep("replay", time.perf_counter() - t0)
    finally:
        await store.clear()
        await redis.aclose()
    labels = {
        "baseline": "baseline (plain read-and-parse loop)",
        "reader": "reader (read, validate, order)",
        "engine": "engine only (rows parsed)",
        "replay": "full replay (reader, engine, " + ("embedded store)" if embedded else "Redis)"),
    }
    for name, label in labels.items():
        t = best[name]
        print(f"  {label:<42} {n / t:>10,.0f} ticks/s  ({t * 1000:,.0f} ms)")
    print(
        f"  ratio full replay / baseline               {best['baseline'] / best['replay']:>10.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
