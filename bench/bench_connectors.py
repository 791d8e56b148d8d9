"""Live data path: local websocket server -> real Kraken connector -> Redis -> engine.

    python bench/bench_connectors.py [--frames 300000] [--rate 2000] [--seconds 5]
                                     [--trades-per-frame 1] [--baseline]
                                     [--conflate 1] [--uvloop]

Needs a Redis server (REDIS_URL, default redis://127.0.0.1:6379/0); uses a throw-away key
prefix and deletes it afterwards. The fake Kraken v1 server runs in its own process (so it
does not share the connector's core); it answers the subscription exactly like Kraken and then
writes trade frames of the recorded shape (``[468,[["price","volume","time","b","m",""]],
"trade","XBT/USD"]``, from ../shared/fixtures/cryptofeed/KRAKEN.ws.48.0), each stamped with
the server's clock as it is written.

Scenarios:
1. baseline: a plain websockets + orjson + pipelined XADD loop (one XADD per message,
   executed every 100 messages), to calibrate this machine.
2. throughput: the server sends --frames as fast as it can; the real `FeedSupervisor`
   (connector, validation, batching writer, `Store.add_ticks`) writes them to Redis.
   Ticks per second from the first tick read to the last tick written.
3. end to end: as 2, with the live `EngineService` (shipped rules) consuming in the same
   process and event loop, as `stressbot run` composes them: ticks per second applied.
4. latency: the server paces --rate frames/s for --seconds; `FeedSupervisor` and the live
   `EngineService` (as `stressbot run` composes them, one process and event loop) run
   together. Tick-to-engine latency is the engine's wall clock when it applies a tick minus
   the server's stamp in the frame: wire, parsing, batching, Redis and the engine's read.

--conflate S adds an ingest run: frames read, parsed and validated per second when writes are
conflated to one tick per S seconds (the example config's "1s").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bot.core.models import Tick  # noqa: E402
from bot.store.redis_store import Store  # noqa: E402

FIXTURE = (
    Path(os.environ.get("STRESSBOT_SHARED", ROOT.parent / "shared"))
    / "fixtures"
    / "cryptofeed"
    / "KRAKEN.ws.48.0"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


# ---- the fake Kraken server (own process) ------------------------------------------------------


def _recorded_trade_shape() -> tuple[str, str]:
    """Split a recorded trade frame into the text before and after its single trade."""
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        if '"trade",' in line and line.split(": ", 1)[1].startswith("["):
            frame = orjson.loads(line.split(": ", 1)[1])
            if isinstance(frame, list) and frame[-2] == "trade":
                head = f"[{frame[0]},["
                tail = '],"trade","XBT/USD"]'
                return head, tail
    raise SystemExit(f"no trade frame in {FIXTURE}")


def _ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", n) + payload
    return bytes((0x81, 127)) + struct.pack("!Q", n) + payload


def _server(
    port: int, ready: Any, mode: str, frames: int, rate: float, seconds: float, k: int
) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    head, tail = _recorded_trade_shape()
    status = next(
        orjson.loads(x.split(": ", 1)[1])
        for x in FIXTURE.read_text().splitlines()
        if '"systemStatus"' in x
    )

    def make(i: int) -> bytes:
        now = time.time()
        trades = ",".join(
            f'["{50000 + (i * k + j) % 997 * 0.1:.5f}","0.01000000","{now:.6f}","b","m",""]'
            for j in range(k)
        )
        return _ws_frame(f"{head}{trades}{tail}".encode())

    async def handler(ws: ServerConnection) -> None:
        sub = orjson.loads(await ws.recv())
        await ws.send(orjson.dumps(status).decode())
        for pair in sub.get("pair", ["XBT/USD"]):
            await ws.send(
                orjson.dumps(
                    {
                        "channelID": 468,
                        "channelName": "trade",
                        "event": "subscriptionStatus",
                        "pair": pair,
                        "status": "subscribed",
                        "subscription": {"name": "trade"},
                    }
                ).decode()
            )
        assert ws.transport is not None
        tr = ws.transport
        if mode == "blast":
            i = 0
            while i < frames:
                n = min(500, frames - i)
                tr.write(b"".join(make(i + j) for j in range(n)))
                i += n
                while tr.get_write_buffer_size() > 4 << 20:  # noqa: ASYNC110 - flow control
                    await asyncio.sleep(0.0005)
                await asyncio.sleep(0)
        else:
            start = time.monotonic()
            sent = 0
            total = int(rate * seconds)
            while sent < total:
                due = min(total, int((time.monotonic() - start) * rate))
                if due > sent:
                    tr.write(b"".join(make(sent + j) for j in range(due - sent)))
                    sent = due
                await asyncio.sleep(0.0005)
        await asyncio.sleep(3600)

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", port, compression=None, ping_interval=None, max_queue=None
        ):
            ready.set()
            await asyncio.sleep(3600)

    asyncio.run(main())


class ServerProcess:
    def __init__(
        self, mode: str, frames: int = 0, rate: float = 0.0, seconds: float = 0.0, k: int = 1
    ) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        ctx = mp.get_context("spawn")
        self.ready = ctx.Event()
        self.proc = ctx.Process(
            target=_server,
            daemon=True,
            args=(self.port, self.ready, mode, frames, rate, seconds, k),
        )

    def __enter__(self) -> ServerProcess:
        self.proc.start()
        if not self.ready.wait(20):
            raise SystemExit("fake server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


# ---- the proposed one-round-trip store write -----------------------------------------------------

# ---- scenarios ---------------------------------------------------------------------------------


def feeds_config(url: str, conflate: float = 0.0) -> Any:
    from connectors.config import FeedsConfig

    return FeedsConfig.model_validate(
        {
            "batch_size": 2000,
            "flush_interval": "2ms",
            "status_interval": "1s",
            "stale_after": "60s",
            "conflate": conflate,
            "sources": {
                "kraken": {
                    "kind": "kraken",
                    "url": url,
                    "channel": "trade",
                    "symbols": {"XBT/USD": "BTC/USD"},
                    "max_past": "10m",
                }
            },
        }
    )


async def baseline(frames: int) -> float:
    """Plain websockets + orjson + pipelined XADD, one entry per message."""
    from websockets.asyncio.client import connect

    redis = Redis.from_url(REDIS_URL)
    key = f"bench:{uuid.uuid4().hex[:8]}:ticks"
    try:
        with ServerProcess("blast", frames=frames) as srv:
            async with connect(srv.url, compression=None, max_queue=None) as ws:
                await ws.send(
                    orjson.dumps(
                        {
                            "event": "subscribe",
                            "pair": ["XBT/USD"],
                            "subscription": {"name": "trade"},
                        }
                    ).decode()
                )
                pipe = redis.pipeline(transaction=False)
                n = 0
                t0 = 0.0
                async for raw in ws:
                    msg = orjson.loads(raw)
                    if type(msg) is not list:
                        continue
                    if n == 0:
                        t0 = time.perf_counter()
                    trade = msg[1][0]
                    pipe.xadd(
                        key,
                        {"s": "BTC/USD", "v": trade[0], "t": trade[2], "src": "kraken"},
                        maxlen=200_000,
                        approximate=True,
                    )
                    n += 1
                    if n % 100 == 0:
                        await pipe.execute()
                    if n == frames:
                        break
                await pipe.execute()
                dt = time.perf_counter() - t0
    finally:
        await redis.delete(key)
        await redis.aclose()
    return frames / dt


async def throughput(frames: int, k: int) -> tuple[float, float]:
    from connectors.supervisor import FeedSupervisor

    redis = Redis.from_url(REDIS_URL)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    total = frames * k
    keep = max(200_000, total)  # the stream is not trimmed below what this run writes
    store = Store(redis, prefix, keep)
    try:
        with ServerProcess("blast", frames=frames, k=k) as srv:
            sup = FeedSupervisor(feeds_config(srv.url), store)
            feed = sup.feeds["kraken"]
            stop = asyncio.Event()
            task = asyncio.create_task(sup.run(stop))
            while feed.health.ticks == 0:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.0005)
            t0 = time.perf_counter()
            c0 = time.process_time()
            while sup.writer.written < total:
                await asyncio.sleep(0.001)
                if time.perf_counter() - t0 > 120:
                    raise SystemExit(f"only {sup.writer.written} of {total} ticks written")
            dt = time.perf_counter() - t0
            cpu = time.process_time() - c0
            stop.set()
            await task
            assert await redis.xlen(store.k_ticks) == total
    finally:
        await store.clear()
        await redis.aclose()
    return total / dt, cpu / total * 1e6


async def ingest_conflated(frames: int, k: int, conflate: float) -> tuple[float, int]:
    """Frames read, parsed and validated per second when writes are conflated."""
    from connectors.supervisor import FeedSupervisor

    redis = Redis.from_url(REDIS_URL)
    store = Store(redis, f"bench:{uuid.uuid4().hex[:8]}")
    total = frames * k
    try:
        with ServerProcess("blast", frames=frames, k=k) as srv:
            sup = FeedSupervisor(feeds_config(srv.url, conflate), store)
            feed = sup.feeds["kraken"]
            stop = asyncio.Event()
            task = asyncio.create_task(sup.run(stop))
            while feed.health.ticks == 0:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.0005)
            t0 = time.perf_counter()
            while feed.health.ticks < total and time.perf_counter() - t0 < 120:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            dt = time.perf_counter() - t0
            stop.set()
            await task
            written = await redis.xlen(store.k_ticks)
    finally:
        await store.clear()
        await redis.aclose()
    return total / dt, written


async def end_to_end(frames: int, k: int) -> float:
    """Ticks per second reaching the engine when the server sends as fast as it can."""
    from bot.engine.rulefile import default_rules_dir, load_rules
    from bot.runtime.config import Config
    from bot.runtime.live import EngineService
    from connectors.supervisor import FeedSupervisor

    redis = Redis.from_url(REDIS_URL)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    total = frames * k
    keep = max(200_000, total)
    store = Store(redis, prefix, keep)
    config = Config.model_validate({"engine": {"checkpoint_every": "5s"}})
    svc = EngineService(config, store, load_rules(default_rules_dir(), config.sessions))
    try:
        with ServerProcess("blast", frames=frames, k=k) as srv:
            sup = FeedSupervisor(feeds_config(srv.url), store)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(sup.run(stop)), asyncio.create_task(svc.run(stop))]
            while sup.feeds["kraken"].health.ticks == 0:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.0005)
            t0 = time.perf_counter()
            while svc.ticks_applied < total and time.perf_counter() - t0 < 300:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            dt = time.perf_counter() - t0
            applied = svc.ticks_applied
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await store.clear()
        await redis.aclose()
    return applied / dt


async def latency(rate: float, seconds: float, k: int) -> dict[str, float]:
    from bot.engine.rulefile import default_rules_dir, load_rules
    from bot.runtime.config import Config
    from bot.runtime.live import EngineService
    from connectors.supervisor import FeedSupervisor

    redis = Redis.from_url(REDIS_URL)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    store = Store(redis, prefix)
    config = Config.model_validate({"engine": {"checkpoint_every": "5s"}})
    rules = load_rules(default_rules_dir(), config.sessions)
    lat: list[float] = []
    written: list[float] = []
    total = int(rate * seconds) * k
    try:
        with ServerProcess("paced", rate=rate, seconds=seconds, k=k) as srv:
            sup = FeedSupervisor(feeds_config(srv.url), store)
            svc = EngineService(config, store, rules)
            original = svc.engine.add
            clock = time.time

            def add(ts: float, symbol: str, value: float, source: str = "") -> None:
                lat.append(clock() - ts)
                original(ts, symbol, value, source)

            svc.engine.add = add  # type: ignore[method-assign]
            store_add = store.add_ticks

            async def add_ticks(ticks: Sequence[Tick]) -> None:
                await store_add(ticks)
                now = clock()
                written.extend(now - t.ts for t in ticks)

            store.add_ticks = add_ticks  # type: ignore[method-assign]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(sup.run(stop)), asyncio.create_task(svc.run(stop))]
            t0 = time.perf_counter()
            while len(lat) < total and time.perf_counter() - t0 < seconds + 30:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            dt = time.perf_counter() - t0
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await store.clear()
        await redis.aclose()
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 100 else [float("nan")] * 99
    w = statistics.quantiles(written, n=100) if len(written) >= 100 else [float("nan")] * 99
    return {
        "ticks": len(lat),
        "expected": total,
        "seconds": dt,
        "p50": q[49] * 1e3,
        "p99": q[98] * 1e3,
        "max": lat[-1] * 1e3 if lat else float("nan"),
        "w50": w[49] * 1e3,
        "w99": w[98] * 1e3,
    }


async def main(args: argparse.Namespace) -> None:
    print(
        f"bench_connectors: Redis {REDIS_URL}, python {sys.version.split()[0]}, "
        f"{'uvloop' if args.uvloop else 'asyncio'} event loop, {os.cpu_count()} cpu(s)"
    )
    if args.baseline:
        mps = await baseline(args.frames)
        print(f"baseline  websockets+orjson+pipelined XADD: {mps:10,.0f} msgs/s")
    if args.conflate:
        tps, written = await ingest_conflated(args.frames, args.trades_per_frame, args.conflate)
        print(
            f"ingest    connector, conflate {args.conflate:g}s, "
            f"{args.trades_per_frame} trade(s)/frame: {tps:10,.0f} ticks/s read, parsed and "
            f"validated ({written:,} written to Redis)"
        )
    tps, cpu = await throughput(args.frames, args.trades_per_frame)
    print(
        f"throughput connector -> Redis, {args.trades_per_frame} trade(s)/frame: "
        f"{tps:10,.0f} ticks/s ({cpu:.1f} us CPU per tick in this process)"
    )
    e2e = await end_to_end(args.e2e_frames, args.trades_per_frame)
    print(f"end to end server -> engine, shipped rules, one process: {e2e:10,.0f} ticks/s")
    r = await latency(args.rate, args.seconds, args.trades_per_frame)
    print(
        f"latency   server stamp -> engine at {args.rate:,.0f} frames/s for "
        f"{args.seconds:g}s: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
        f"max {r['max']:.1f} ms ({r['ticks']:,.0f}/{r['expected']:,.0f} ticks "
        f"reached the engine); to Redis (written): p50 {r['w50']:.2f} ms, "
        f"p99 {r['w99']:.2f} ms"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300_000)
    ap.add_argument("--trades-per-frame", type=int, default=1)
    ap.add_argument(
        "--e2e-frames", type=int, default=30_000, help="frames for the run through the engine"
    )
    ap.add_argument("--rate", type=float, default=2_000, help="frames/s in the latency run")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument(
        "--conflate",
        type=float,
        default=0.0,
        help="also measure ingest with writes conflated to this interval (s)",
    )
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(a))
