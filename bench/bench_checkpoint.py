"""What one live-engine checkpoint costs after days of running, paged against whole.

    python bench/bench_checkpoint.py [--days 30.5] [--every 20] [--repeat 5]

An engine with the default rules is fed `--days` of ticks for BTC/USD, XAU/USD, EUR/USD and
USD/JPY (a random walk, one tick per symbol every `--every` seconds; past two hours the
series are 5-minute bars whatever the tick rate, so this is the size of a month of live
history). Then, alternating `--repeat` times, five more seconds of ticks and a checkpoint:

  whole   the state with every series in it (`Engine.snapshot`, what a checkpoint wrote
          before the pages) and its commit to Redis
  paged   `Engine.checkpoint`: the state and only the pages changed since the last commit
          (`bot.engine.pages`), committed to Redis with `commit_engine`

Printed: bytes written per checkpoint, the engine's CPU time to make it and the commit's
wall time (best of the repeats; the bytes of the biggest: the newest page grows through its
day, and the feed ends half a day past a page boundary by default), and the ratio paged /
whole. Needs a Redis server (REDIS_URL, default redis://127.0.0.1:6379/0); uses a
throw-away key prefix, deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.core.models import PageWrite  # noqa: E402
from bot.engine.engine import Engine  # noqa: E402
from bot.engine.rulefile import default_rules_dir, load_rules  # noqa: E402
from bot.runtime.checkpoint import commit_engine  # noqa: E402
from bot.runtime.config import Config  # noqa: E402
from bot.store.redis_store import Checkpoint, Store  # noqa: E402

SYMBOLS = {"BTC/USD": 60_000.0, "XAU/USD": 2_000.0, "EUR/USD": 1.08, "USD/JPY": 150.0}
START = 1_704_067_200.0  # 2024-01-01 00:00 UTC


class Feed:
    def __init__(self, every: float) -> None:
        self.t = START
        self.every = every
        self.px = dict(SYMBOLS)
        self.rng = random.Random(8)

    def run(self, e: Engine, seconds: float) -> None:
        end = self.t + seconds
        rng, px = self.rng, self.px
        while self.t < end:
            for sym in px:
                px[sym] *= 1.0 + rng.gauss(0.0, 0.0004)
                e.add(self.t, sym, px[sym])
            self.t += self.every
        e.take_alerts()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30.5)
    ap.add_argument("--every", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    e = Engine.from_config(rules, config.engine, config.sessions)
    feed = Feed(args.every)
    t0 = time.process_time()
    feed.run(e, args.days * 86_400)
    points = sum(len(s.ts) for s in e.series.values())
    print(
        f"fed {args.days:g} days ({e.ticks:,} ticks, {time.process_time() - t0:.1f} s CPU); "
        f"the series hold {points:,} points"
    )
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    store = Store(redis, prefix=f"bench:{uuid.uuid4().hex[:10]}")
    best: dict[str, list[float]] = {"whole": [1e9, 1e9, 0], "paged": [1e9, 1e9, 0]}
    try:
        await commit_engine(store, e, "p", "f", {}, [])  # the first commit writes every page
        for _ in range(args.repeat):
            for path in ("paged", "whole"):
                feed.run(e, 5.0)
                c0 = time.process_time()
                if path == "whole":
                    state = e.snapshot()
                    made = time.process_time() - c0
                    size = len(state)
                    w0 = time.perf_counter()
                    cp = Checkpoint("p", "f", e.clock, state, PageWrite(None, "whole"))
                    await store.commit(cp, [])
                    e.pages.rev = None  # the store's pages were replaced: the next paged is whole
                else:
                    state, pages = e.checkpoint()
                    made = time.process_time() - c0
                    size = len(state) + sum(len(k) + len(v) for k, v in pages.put.items())
                    w0 = time.perf_counter()
                    cp = Checkpoint("p", "f", e.clock, state, pages)
                    await store.commit(cp, [])
                    e.checkpointed(pages)
                wall = time.perf_counter() - w0
                b = best[path]
                b[0], b[1], b[2] = min(b[0], made), min(b[1], wall), max(b[2], size)
            # the whole checkpoint replaced the pages: write them all again, unmeasured
            state, pages = e.checkpoint()
            await store.commit(Checkpoint("p", "f", e.clock, state, pages), [])
            e.checkpointed(pages)
    finally:
        await store.clear()
        await redis.aclose()
    print(f"{'checkpoint':<10} {'bytes':>12} {'make (CPU ms)':>14} {'commit (ms)':>12}")
    for path, (made, wall, size) in best.items():
        print(f"{path:<10} {size:>12,.0f} {made * 1e3:>14.2f} {wall * 1e3:>12.2f}")
    w, p = best["whole"], best["paged"]
    print(
        f"ratio paged/whole: bytes {p[2] / w[2]:.4f}, make {p[0] / w[0]:.3f}, "
        f"commit {p[1] / w[1]:.3f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
