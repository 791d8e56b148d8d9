"""A master that refuses writes for want of replicas (``min-replicas-to-write`` with too few
replicas connected: ``NOREPLICAS``) is an outage to wait out, like a lost connection: the
engine and every service restarted by ``_guard`` wait with backoff and carry on once writes
are accepted again. Against a real redis-server of the test's own, started with
``min-replicas-to-write 1`` and no replica; ``CONFIG SET min-replicas-to-write 0`` stands for
the replica coming back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.core.models import Alert, AlertKind, Severity, Tick
from bot.runtime.live import _guard
from bot.store.connection import connect, is_outage, refuses_writes
from bot.store.redis_store import Checkpoint, Store
from tests.fake_feeds import wait_until
from tests.redis_server import OwnRedis
from tests.test_redis_cluster import T0, H, _fired, _leased_engine

NO_REPLICA = ["--min-replicas-to-write", "1"]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    (tmp_path / "redis").mkdir()
    async with OwnRedis(tmp_path / "redis", extra=NO_REPLICA) as s:  # killed on exit
        yield s


async def _accept_writes(server: OwnRedis) -> None:
    """What a replica coming back does to the master: writes are accepted again."""
    async with Redis(port=server.port) as r:
        await r.config_set("min-replicas-to-write", 0)


async def _refusal(aw: Any) -> BaseException:
    try:
        await aw
    except ResponseError as e:
        return e
    raise AssertionError("the write was accepted: min-replicas-to-write is not in force")


async def test_noreplicas_is_an_outage_from_a_command_a_script_and_a_transaction(
    server: OwnRedis,
) -> None:
    conn = await connect(server.url)
    try:
        store = Store(conn.redis, prefix="nr")
        alert = Alert("a1", T0, "r", "crypto_crash", Severity.WARNING, "s")
        refusals = {
            "HSET": await _refusal(store.set_feed_status("kraken", {"ok": True})),
            "script": await _refusal(store.add_ticks([Tick(T0, "BTC/USD", 1.0)])),
            "MULTI/EXEC": await _refusal(store.commit(Checkpoint("1-0", "f", T0, b"{}"), [alert])),
        }
        for how, e in refusals.items():
            assert refuses_writes(e) and is_outage(e), (how, str(e))
        # reads still work, and another server error is no outage
        assert await store.load_checkpoint() is None
        other = await _refusal(conn.redis.xinfo_stream("nr:missing"))
        assert not refuses_writes(other) and not is_outage(other), str(other)
    finally:
        await conn.close()


async def test_the_engine_waits_out_noreplicas_and_carries_on(
    server: OwnRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused from its first write (the lease) on, the engine waits (on main the
    ResponseError ended the engine task); once writes are accepted it takes the lease, and
    the alert of the ticks written then is raised once."""
    caplog.set_level(logging.WARNING, logger="bot.runtime.live")
    conn = await connect(server.url)
    store = Store(conn.redis, prefix="nr")
    svc = _leased_engine(tmp_path, store)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        await wait_until(lambda: task.done() or svc.outages >= 2, within=15, what="2 outages")
        assert not task.done(), task
        assert svc.lease.value is None
        assert "NOREPLICAS: Redis refuses writes" in caplog.text, caplog.text
        assert "min-replicas-to-write" in caplog.text
        await _accept_writes(server)
        await wait_until(lambda: svc.lease.value is not None, within=15, what="the lease")
        ticks = [Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)]
        await store.add_ticks([*ticks, Tick(T0, "BTC/USD", 90.0)])
        await wait_until(lambda: _fired(store), within=15, what="the alert")
        await asyncio.sleep(0.5)
        firing = [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
        assert len(firing) == 1, firing
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        await conn.close()


class _Writer:
    """A service whose run writes once to the store and returns."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tries = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.tries += 1
        await self.store.set_feed_status("kraken", {"ok": True})


async def test_a_service_refused_with_noreplicas_is_restarted_not_stressbot_stopped(
    server: OwnRedis,
) -> None:
    conn = await connect(server.url)
    try:
        svc = _Writer(Store(conn.redis, prefix="nr"))
        stop = asyncio.Event()
        task = asyncio.create_task(_guard("feeds", svc, stop))
        await wait_until(lambda: task.done() or svc.tries >= 2, within=15, what="a restart")
        assert not stop.is_set() and not task.done()  # on main: "feeds failed; stopping"
        await _accept_writes(server)
        await asyncio.wait_for(task, 15)  # the write went through: the service returned
        assert not stop.is_set()
        assert "kraken" in await svc.store.feed_statuses()
    finally:
        await conn.close()
