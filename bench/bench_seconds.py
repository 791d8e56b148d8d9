"""Engine speed on second-level input (a live feed, a backlog after downtime, a replay of
second data), with the window scans on block summaries against scans of every point.

    python bench/bench_seconds.py [--hours 4] [--repeat 3]

Four symbols (BTC/USD, XAU/USD, EUR/USD, USD/JPY; a random walk) tick every second with the
default rules for `--hours`; the figure is the CPU speed over the last hour, once the 24-hour
windows hold hours of 1-second points. Alternating in one process, `--repeat` times:

  plain    `max_drop`, `high`, `low`, `drawdown` and `rally` scanning every point of their
           window (the baseline)
  blocks   the same reading the block summaries of `bot.engine.blocks` (what runs)

Both must raise the same alerts; the run stops with an error if they do not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_checkpoint import Feed  # noqa: E402

from bot.engine import blocks  # noqa: E402
from bot.engine.engine import Engine  # noqa: E402
from bot.engine.rulefile import default_rules_dir, load_rules  # noqa: E402
from bot.runtime.config import Config  # noqa: E402


def run(hours: float) -> tuple[float, list[bytes]]:
    """(ticks/s of CPU over the last hour, the alerts)."""
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    e = Engine.from_config(rules, config.engine, config.sessions)
    out: list[bytes] = []
    feed = Feed(1.0)
    feed.run(e, (hours - 1.0) * 3600)
    out += [a.dumps() for a in e.take_alerts()]
    ticks = e.ticks
    c = time.process_time()
    feed.run(e, 3600.0)
    cpu = time.process_time() - c
    out += [a.dumps() for a in e.take_alerts() + e.finish()]
    return (e.ticks - ticks) / cpu, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    fast: dict[str, Callable[..., Any]] = {"max_drop": blocks.max_drop, "high_low": blocks.high_low}
    plain: dict[str, Callable[..., Any]] = {
        "max_drop": blocks.scan_max_drop,
        "high_low": blocks.scan_high_low,
    }
    best: dict[str, float] = {}
    alerts: dict[str, list[bytes]] = {}
    for _ in range(args.repeat):
        for name, fns in (("plain", plain), ("blocks", fast)):
            for attr, fn in fns.items():
                setattr(blocks, attr, fn)
            speed, alerts[name] = run(args.hours)
            best[name] = max(best.get(name, 0.0), speed)
    for attr, fn in fast.items():
        setattr(blocks, attr, fn)
    if alerts["plain"] != alerts["blocks"]:
        raise SystemExit("the two ways raised different alerts")
    print(
        f"4 symbols ticking every second, {args.hours:g} h, the default rules, best of "
        f"{args.repeat}; CPU ticks/s over the last hour ({len(alerts['blocks'])} alerts, "
        "the same both ways)"
    )
    print(f"  plain scans of every point (baseline)  {best['plain']:>10,.0f} ticks/s")
    print(f"  block summaries                        {best['blocks']:>10,.0f} ticks/s")
    print(f"  ratio                                  {best['blocks'] / best['plain']:>10.2f}")


if __name__ == "__main__":
    main()
