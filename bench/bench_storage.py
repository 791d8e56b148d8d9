"""Steady-state Redis memory of the notifier side for a year of operation (issue 12).

    python bench/bench_storage.py [--dests 2] [--heartbeat-dests 1]

Needs a Redis server (REDIS_URL, default redis://127.0.0.1:6379/0) and ../shared's history
files; uses throw-away key prefixes and deletes them afterwards.

1. Alert rates: both real history files replayed with the default rules (the calibration's
   runs), alerts a year counted, firing and resolved.
2. Bytes per alert, by ``MEMORY USAGE key SAMPLES 0`` (every element counted) on a real Redis:
   the outbox holding those real alerts (with their chart points), delivery marks written by
   ``Ledger.record_part`` as delivery writes them, heartbeat entries, suppressed-alert records.
   Marks are measured at their steady-state count (a hash of under 128 small fields is a
   compact listpack, a bigger one a hash table: the per-field cost differs).
3. Steady state: with ``outbox_retention`` R and ``mark_ttl`` T (defaults 30 d and 90 d) the
   outbox holds R of traffic and each destination's marks T of its deliveries, whatever the
   uptime; the capped logs hold at most their cap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bot.cli.common import rules_for  # noqa: E402
from bot.core.models import Alert  # noqa: E402
from bot.notify.heartbeat import heartbeat_alert  # noqa: E402
from bot.notify.ledger import Ledger  # noqa: E402
from bot.notify.silences import SUPPRESSED_MAXLEN, Silence, Silences  # noqa: E402
from bot.runtime.config import Config  # noqa: E402
from bot.runtime.replay import ReplayOptions, run_replay  # noqa: E402
from bot.store.redis_store import Store  # noqa: E402

YEAR = 365.25 * 86400
SHARED = Path(os.environ.get("STRESSBOT_SHARED", ROOT.parent / "shared")) / "data" / "history"
FILES = ("dev-2019-2021.csv.gz", "dev-2000-2018-daily.csv.gz")


async def usage(r: Redis, key: str) -> int:
    return int(await r.memory_usage(key, samples=0) or 0)


async def replay_rates(r: Redis, cfg: Config) -> tuple[float, list[Alert]]:
    """Alerts a year over both files (the worse of the two), and every alert raised."""
    rates, every = [], []
    for name in FILES:
        store = Store(r, prefix=f"bench:{uuid.uuid4().hex[:8]}")
        try:
            res = await run_replay(
                ReplayOptions(files=[SHARED / name]), cfg, store, rules_for(cfg, None)
            )
        finally:
            await store.clear()
        years = res.span / YEAR
        rates.append(len(res.alerts) / years)
        every += res.alerts
        print(f"  {name}: {len(res.alerts)} alerts in {years:.1f} years = {rates[-1]:.1f}/year")
    return max(rates), every


async def per_entry(r: Redis, alerts: list[Alert]) -> float:
    store = Store(r, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    try:
        for a in alerts:
            await store.publish_alert(a)
        return await usage(r, store.k_outbox) / len(alerts)
    finally:
        await store.clear()


async def per_mark(r: Redis, n: int) -> float:
    store = Store(r, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    ledger = Ledger(store)
    try:
        for i in range(n):
            await ledger.record_part(
                "desk",
                f"rule_{i % 7}@2026-01-01T00:00:{i:06d}Z",
                1,
                [str(10_000 + i)],
                final=True,
                entry_id=None,
            )
        return await usage(r, store.key("notify:sent:desk")) / n
    finally:
        await store.clear()


async def per_suppressed(r: Redis, alerts: list[Alert], n: int) -> float:
    store = Store(r, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    sil = Silences(store)
    s = Silence("abcdef012345", [], 0.0, 1e12)
    try:
        for i in range(n):
            pipe = r.pipeline(transaction=False)
            sil.record(pipe, "desk", alerts[i % len(alerts)], s, time.time())
            await pipe.execute()
        return await usage(r, sil.k_suppressed) / n
    finally:
        await store.clear()


def human(b: float) -> str:
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dests", type=int, default=2, help="destinations (chats and webhooks)")
    ap.add_argument("--heartbeat-dests", type=int, default=1, help="of them, with heartbeat")
    ap.add_argument(
        "--feed-alerts-per-day",
        type=float,
        default=20.0,
        help="feed-health alerts (live only, not in a replay): firing and resolved",
    )
    args = ap.parse_args()
    r = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    cfg = Config()
    st = cfg.notify.storage
    hb_interval = cfg.notify.heartbeat.interval
    print("alert rates (default rules):")
    rate, alerts = await replay_rates(r, cfg)
    hb_rate = YEAR / hb_interval
    entry = await per_entry(r, alerts)
    hb = [heartbeat_alert(1.8e9 + i * hb_interval, hb_interval) for i in range(2000)]
    hb_entry = await per_entry(r, hb)
    feed = [
        Alert(
            f"feed:kraken@2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            1.8e9 + i,
            "feed:kraken",
            "feed_health",
            "warning",
            "Feed kraken is stale; last tick 95 s ago: no message for 90 s",
        )
        for i in range(2000)
    ]
    feed_entry = await per_entry(r, feed)
    rate_all = rate + args.feed_alerts_per_day * 365.25
    alert_marks = rate_all * st.mark_ttl / YEAR
    hb_marks = hb_rate * st.mark_ttl / YEAR
    mark_small = await per_mark(r, max(100, int(alert_marks)))
    mark_big = await per_mark(r, int(hb_marks + alert_marks))
    supp = await per_suppressed(r, alerts, 2000)
    wants_hb = args.heartbeat_dests > 0
    rows = [
        ("outbox: alerts", rate * st.outbox_retention / YEAR, entry),
        (
            "outbox: feed-health alerts",
            args.feed_alerts_per_day * st.outbox_retention / 86400,
            feed_entry,
        ),
        ("outbox: heartbeats", hb_rate * st.outbox_retention / YEAR if wants_hb else 0, hb_entry),
        (
            f"marks: alerts x {args.dests - args.heartbeat_dests} destination(s)",
            alert_marks * (args.dests - args.heartbeat_dests),
            mark_small,
        ),
        (
            f"marks: alerts + heartbeats x {args.heartbeat_dests} destination(s)",
            (alert_marks + hb_marks) * args.heartbeat_dests,
            mark_big,
        ),
        ("suppressed-alert log (capped)", SUPPRESSED_MAXLEN, supp),
    ]
    print(
        f"\nbytes per outbox alert {entry:.0f}, feed alert {feed_entry:.0f}, heartbeat "
        f"{hb_entry:.0f}, per mark "
        f"{mark_small:.0f} (listpack) / {mark_big:.0f} (hash table), per suppressed record "
        f"{supp:.0f}"
    )
    print("\n| what | entries held | bytes each | steady state |\n|---|---:|---:|---:|")
    total = 0.0
    for what, n, b in rows:
        total += n * b
        print(f"| {what} | {n:,.0f} | {b:,.0f} | {human(n * b)} |")
    print(f"| **total** | | | **{human(total)}** |")
    await r.aclose()


if __name__ == "__main__":
    asyncio.run(main())
