"""Outbox -> destination delivery: throughput and latency against the local fake servers.

    python bench/bench_delivery.py [--alerts 500] [--chart-alerts 40] [--live-alerts 200]

Needs a Redis server (REDIS_URL, default redis://127.0.0.1:6379/0); uses a throw-away key
prefix and deletes it afterwards. The fake Telegram and Discord servers run in their own
thread and event loop, so the notifier shares its loop with nothing but Redis.

Scenarios (pacing disabled, to measure the pipeline rather than the configured politeness):
1. drain: N alerts already in the outbox, `deliver_pending` to one Telegram chat and one
   Discord webhook, no charts. Throughput in alerts/s and per-alert latency from the outbox
   write to the destination's acceptance.
2. drain with charts: the same with a chart (PNG drawn per alert) to both destinations.
3. live: `NotifierService` running, alerts published one at a time at a steady rate;
   latency from publish to acceptance at the fake server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bot.core.models import Alert  # noqa: E402
from bot.notify import NotifierService, deliver_pending  # noqa: E402
from bot.runtime.config import Config  # noqa: E402
from bot.store.redis_store import Store  # noqa: E402
from tests.fake_discord import FakeDiscord  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

TOKEN_ENV = "STRESSBOT_BENCH_TG_TOKEN"
HOOK_ID, HOOK_TOKEN = "1300000000000000001", "bench-hook-token-abcdefghij"


class Fakes:
    """Both fake servers on a background thread's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tg: FakeTelegram | None = None
        self.dc: FakeDiscord | None = None

    def start(self) -> Fakes:
        self.thread.start()

        async def up() -> None:
            self.tg = await FakeTelegram().start()
            self.dc = await FakeDiscord(bucket_limit=10**9, bucket_window=1.0).start()
            self.dc.add_webhook(HOOK_ID, HOOK_TOKEN)

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def down() -> None:
            assert self.tg is not None and self.dc is not None
            await self.tg.stop()
            await self.dc.stop()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def reset(self) -> None:
        assert self.tg is not None and self.dc is not None
        self.tg.sent.clear()
        self.dc.posted.clear()


def config(prefix: str, fakes: Fakes, charts: bool) -> Config:
    assert fakes.tg is not None and fakes.dc is not None
    return Config.model_validate(
        {
            "redis": {"prefix": prefix},
            "notify": {
                "telegram": {
                    "token_env": TOKEN_ENV,
                    "api_base": fakes.tg.base,
                    "min_interval": 0,
                    "group_min_interval": 0,
                    "global_min_interval": 0,
                    "chats": [{"name": "tg", "chat_id": -100777, "charts": charts}],
                },
                "discord": {
                    "min_interval": 0,
                    "global_min_interval": 0,
                    "webhooks": [
                        {
                            "name": "dc",
                            "charts": charts,
                            "url": f"http://127.0.0.1:{fakes.dc.port}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}",
                        }
                    ],
                },
            },
        }
    )


def make_alert(i: int, ts: float, symbols: list[str]) -> Alert:
    return Alert(
        id=f"bench:{i}",
        ts=ts,
        rule="bench",
        pattern="crypto_crash",
        severity="critical",
        summary=f"BTC fell 12.5% in 1h (bench alert {i})",
        values={"BTC/USD": 61234.5, "move_pct": -12.5},
        symbols=symbols,
        window=3600.0,
    )


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def show(title: str, n_alerts: int, n_dest: int, elapsed: float, lat: list[float]) -> None:
    ms = [x * 1000 for x in lat]
    print(
        f"{title}: {n_alerts} alerts x {n_dest} destinations in {elapsed:.2f}s = "
        f"{n_alerts * n_dest / elapsed:.0f} deliveries/s; latency outbox->accepted ms "
        f"p50 {pct(ms, 0.5):.1f} p95 {pct(ms, 0.95):.1f} p99 {pct(ms, 0.99):.1f} "
        f"max {max(ms) if ms else float('nan'):.1f}"
    )


async def drain(store: Store, fakes: Fakes, n: int, charts: bool) -> None:
    fakes.reset()
    await store.clear()
    t0 = time.time() - 3600
    if charts:
        await store.add_series(
            {
                "BTC/USD": [(t0 + i * 60, 65000 - i * 100.0) for i in range(61)],
                "US10Y": [(t0 + i * 60, 4.2 + i * 0.001) for i in range(61)],
            },
            keep_after=0,
        )
    syms = ["BTC/USD", "US10Y"] if charts else []
    pipe = store.redis.pipeline(transaction=False)
    for i in range(n):
        a = make_alert(i, t0 + 3600, syms)
        pipe.xadd(store.k_outbox, {"id": a.id, "alert": a.dumps()})
    await pipe.execute()
    start = time.perf_counter()
    report = await deliver_pending(config(store.prefix, fakes, charts), store)
    elapsed = time.perf_counter() - start
    assert fakes.tg is not None and fakes.dc is not None
    assert report.total("delivered") == 2 * n, report.summary()
    assert len(fakes.tg.sent) == n and len(fakes.dc.posted) == n
    lat = [x for r in report.destinations.values() for x in r.latencies]
    show(f"drain{' with charts' if charts else ''}", n, 2, elapsed, lat)
    for name, r in report.destinations.items():
        print(f"  {name}: last accepted {max(r.latencies):.2f}s after the first outbox write")


async def live(store: Store, fakes: Fakes, n: int, rate: float) -> None:
    fakes.reset()
    await store.clear()
    assert fakes.tg is not None and fakes.dc is not None
    published: dict[str, float] = {}
    stop = asyncio.Event()
    svc = NotifierService(config(store.prefix, fakes, False), store)
    task = asyncio.create_task(svc.run(stop))
    await asyncio.sleep(0.5)  # groups created, reads blocking
    start = time.perf_counter()
    for i in range(n):
        a = make_alert(i, time.time(), [])
        published[a.id] = time.time()
        await store.publish_alert(a)
        await asyncio.sleep(1.0 / rate)
    for _ in range(6000):  # up to 60 s
        if len(fakes.tg.sent) >= n and len(fakes.dc.posted) >= n:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    lat: list[float] = []
    for s in fakes.tg.sent:
        aid = s.visible.rsplit("id: ", 1)[1].split()[0]
        lat.append(s.at - published[aid])
    for p in fakes.dc.posted:
        aid = p.embeds[0]["footer"]["text"].rsplit("id ", 1)[1]
        lat.append(p.at - published[aid])
    show(f"live at {rate:g} alerts/s", n, 2, elapsed, lat)
    print(
        f"  (live latency is publish -> accepted by the fake server; median "
        f"{statistics.median(lat) * 1000:.1f} ms)"
    )


async def main(args: argparse.Namespace) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis = Redis.from_url(url)
    await redis.ping()
    store = Store(redis, prefix=f"bench:{uuid.uuid4().hex[:10]}")
    fakes = Fakes().start()
    assert fakes.tg is not None
    os.environ[TOKEN_ENV] = fakes.tg.token
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Redis at {url}")
    try:
        await drain(store, fakes, args.alerts, charts=False)
        await drain(store, fakes, args.chart_alerts, charts=True)
        await live(store, fakes, args.live_alerts, args.live_rate)
    finally:
        await store.clear()
        await redis.aclose()
        fakes.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--alerts", type=int, default=500)
    ap.add_argument("--chart-alerts", type=int, default=40)
    ap.add_argument("--live-alerts", type=int, default=200)
    ap.add_argument("--live-rate", type=float, default=50.0)
    a: Any = ap.parse_args()
    asyncio.run(main(a))
