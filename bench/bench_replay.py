"""Replay throughput on the 2019-2021 dev file with the default rules.

    python bench/bench_replay.py [FILE] [--repeat N]

Prints three figures, each the best of N runs, in ticks per second:
  - engine:  rows already parsed, only Engine.add + evaluation (the rule engine's own speed)
  - file:    reading and validating the CSV, plus the engine (what one core does end to end)
  - replay:  the full `stressbot replay` path: file, engine, checkpoints and outbox in Redis
             (the Redis at REDIS_URL, else the embedded store; which one is printed)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

from bot.engine.engine import Engine
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.replay import ReplayOptions, run_replay
from bot.store.connection import connect, redis_url
from bot.store.redis_store import Store
from connectors.history.file import read_history

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared/data/history/dev-2019-2021.csv.gz"


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    rows = [(ts, s, v) for _, _, ts, s, v in read_history([args.file])]
    n = len(rows)
    print(
        f"{args.file.name}: {n:,} ticks, {len(rules.rules)} rules, "
        f"best of {args.repeat} runs, one core (CPython {os.sys.version.split()[0]})"
    )

    def engine_only() -> None:
        e = Engine.from_config(rules, config.engine, config.sessions)
        add = e.add
        for ts, s, v in rows:
            add(ts, s, v)
        e.finish()

    def file_and_engine() -> None:
        e = Engine.from_config(rules, config.engine, config.sessions)
        add = e.add
        for _, _, ts, s, v in read_history([args.file]):
            add(ts, s, v)
        e.finish()

    t = best(engine_only, args.repeat)
    print(f"  engine   {n / t:>12,.0f} ticks/s  ({t * 1000:.0f} ms)")
    t = best(file_and_engine, args.repeat)
    print(f"  file     {n / t:>12,.0f} ticks/s  ({t * 1000:.0f} ms)")

    redis, embedded = await connect(redis_url(None), allow_embedded=True)
    store = Store(redis, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    times = []
    try:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            await run_replay(ReplayOptions(files=[args.file]), config, store, rules)
            times.append(time.perf_counter() - t0)
    finally:
        await store.clear()
        await redis.aclose()
    t = min(times)
    where = "embedded store" if embedded else "Redis"
    print(f"  replay   {n / t:>12,.0f} ticks/s  ({t * 1000:.0f} ms, {where})")


if __name__ == "__main__":
    asyncio.run(main())
