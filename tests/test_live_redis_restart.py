"""Issue 11, defect 1: a Redis restart must not stop `stressbot run`.

The real command runs in a subprocess against a redis-server of the test's own, with a fake
Kraken on loopback. Redis is killed (SIGKILL) mid-run and started again on the same port, with
and without persistence (AOF, fsync always). The bot keeps running, the feeds' writer buffers
meanwhile, the engine waits with backoff and resumes (from the checkpoint, or from memory when
Redis came back empty), and a rule whose ticks arrive after the restart fires exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.cli.feeds import feed_rows
from bot.core.models import AlertKind
from bot.runtime.config import load_config
from bot.store.redis_store import Store, stream_id
from tests.conftest import ROOT, shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Script,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    wait_until,
)
from tests.redis_server import OwnRedis
from tests.test_connector_live_run import RULE, start_bot, to_toml

PREFIX = "restart"


def kraken_only(kraken_url: str) -> dict[str, Any]:
    """config.example.toml with only the Kraken feed (at `kraken_url`), no backfill, a
    checkpoint per tick and no metrics server."""
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    for name, src in data["feeds"]["sources"].items():
        src["enabled"] = name == "kraken"
    data["feeds"]["backfill"]["days"] = 0
    data["feeds"]["sources"]["kraken"]["url"] = kraken_url
    data["feeds"]["sources"]["kraken"]["stale_after"] = "60s"
    data.setdefault("engine", {})["max_lateness"] = "0s"
    data["engine"]["checkpoint_every"] = "0s"
    data.setdefault("metrics", {})["enabled"] = False
    return data


def write_config(tmp_path: Path, kraken_url: str) -> tuple[Path, Path]:
    data = kraken_only(kraken_url)
    data["redis"]["prefix"] = PREFIX
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "live.toml").write_text(RULE)
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(data))
    return cfg, rules


async def stop_bot(proc: asyncio.subprocess.Process) -> tuple[int | None, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30.0)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace")


async def engine_caught_up(store: Store) -> None:
    """The engine's checkpoint reaches the newest tick in the stream as of now."""
    newest = await store.redis.xrevrange(store.k_ticks, "+", "-", count=1)
    assert newest, "no ticks yet"
    target = stream_id(
        str(newest[0][0], "ascii") if isinstance(newest[0][0], bytes) else str(newest[0][0])
    )

    async def there() -> bool:
        cp = await store.load_checkpoint()
        return cp is not None and stream_id(cp.position) >= target

    await wait_until(
        there, within=60.0, what="the engine to apply the ticks written after Redis came back"
    )


async def firing(store: Store) -> list[str]:
    return [
        a.id
        for _, a in await store.alerts()
        if a.rule == "btc_live_drop" and a.kind is AlertKind.FIRING
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
@pytest.mark.parametrize("persist", [False, True], ids=["no-persistence", "aof"])
async def test_redis_restart_does_not_stop_stressbot_run(tmp_path: Path, persist: bool) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)
    drop_from: list[int] = []  # the frame index the drop starts at, once asked for
    sent = [0]

    def frames(pair: str, cid: int, i: int) -> str:
        sent[0] = i
        steps = min(i - drop_from[0], 12) if drop_from and i >= drop_from[0] else 0
        return kraken_ticker_frame(template, cid, pair, 50_000.0 * (1 - 0.01 * steps))

    async with (
        OwnRedis(tmp_path, persist=persist) as server,
        FakeKraken(rec, frames, Script(Behaviour(interval=0.02))) as fake,
    ):
        cfg, rules = write_config(tmp_path, fake.url)
        client = Redis.from_url(server.url, socket_timeout=10.0)
        store = Store(client, prefix=PREFIX)
        proc = await start_bot(cfg, rules, server.url)
        try:
            await wait_until(
                tolerant(store.load_checkpoint), within=60.0, what="a first checkpoint"
            )
            await server.kill()
            down_at = time.monotonic()
            await asyncio.sleep(2.0)  # ticks keep coming; nothing can be written
            assert proc.returncode is None, "stressbot run exited while Redis was down"
            await server.start()
            await wait_until(
                tolerant(lambda: client.exists(store.k_ticks)), within=60.0, what="new ticks"
            )
            await engine_caught_up(store)
            assert proc.returncode is None
            assert await firing(store) == []
            drop_from.append(sent[0] + 1)
            await wait_until(
                lambda: _one(firing(store)), within=60.0, what="the rule to fire after the restart"
            )
            resumed_after = time.monotonic() - down_at
            await asyncio.sleep(3.0)  # time for a duplicate to show up, if one would
            assert len(await firing(store)) == 1
            config = load_config(cfg)
            rows = feed_rows(config, await store.feed_statuses(), time.time())
            assert next(r for r in rows if r["feed"] == "kraken")["state"] == "ok"
        finally:
            rc, log = await stop_bot(proc)
            with_fail = log[-4000:]
            await client.aclose()
    assert rc == 0, with_fail
    assert "store unavailable" in log, with_fail
    assert "stopping stressbot" not in log, with_fail
    mode = "aof" if persist else "no persistence"
    print(f"redis restart ({mode}): alert {resumed_after:.1f} s after the kill")


async def _one(ids: object) -> bool:
    assert asyncio.iscoroutine(ids)
    return len(await ids) >= 1


def tolerant(pred: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[bool]]:
    """A predicate that counts a connection the killed server closed as "not yet"."""

    async def check() -> bool:
        try:
            return bool(await pred())
        except (RedisConnectionError, OSError):
            return False

    return check


def test_feeds_shows_a_record_nobody_refreshes_as_no_report(tmp_path: Path) -> None:
    """`stressbot feeds` for a bot that is gone: "no report for ...", not a stale "ok"."""
    config = load_config(None)
    now = time.time()
    rec = {"state": "ok", "since": now - 900, "updated": now - 120, "ticks": 5, "msgs": 5}
    rows = feed_rows(config, {"kraken": rec}, now)
    row = next(r for r in rows if r["feed"] == "kraken")
    assert row["state"] == "no report"
    assert "no report for 2m" in row["detail"] and "is `stressbot run` running?" in row["detail"]
    fresh = feed_rows(config, {"kraken": {**rec, "updated": now - 1}}, now)
    assert next(r for r in fresh if r["feed"] == "kraken")["state"] == "ok"
    buffering = {**rec, "updated": now - 1, "writer": {"buffered": 1234, "overflow": 0}}
    row = next(r for r in feed_rows(config, {"kraken": buffering}, now) if r["feed"] == "kraken")
    assert "1,234 tick(s) buffered" in row["detail"]
