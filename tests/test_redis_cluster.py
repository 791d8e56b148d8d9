"""Issue 11, "beyond one Redis server": stressbot on a local 3-node Redis Cluster.

Every key of a prefix is hash-tagged (``{prefix}:...``) into one slot, so the MULTI/EXEC
transactions and the Lua scripts (tick append, fenced commit, lease, the ledger's claims)
are valid on a cluster. A replay with a notifier drain lists every key it created on every
node: all in one slot, on one node. The live engine's scripts run there, and `stressbot
replay` works with nothing changed but ``REDIS_URL=redis+cluster://...``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from bot.cli.common import rules_for
from bot.core.models import Alert, AlertKind, Tick
from bot.engine.rulefile import load_rules
from bot.notify import deliver_pending
from bot.notify.ledger import Ledger
from bot.notify.service import accepts
from bot.runtime.config import Config
from bot.runtime.leader import EngineLease
from bot.runtime.live import EngineService
from bot.runtime.replay import ReplayOptions, run_replay
from bot.store.connection import Connection, connect
from bot.store.redis_store import Checkpoint, FencedOut, Store
from tests.conftest import ROOT, shared_path
from tests.fake_feeds import wait_until
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import TOKEN_ENV, notify_config
from tests.redis_server import OwnCluster
from tests.test_engine_lease import RULE

T0 = 1_700_000_000.0
H = 3600.0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[OwnCluster]:
    async with OwnCluster(tmp_path) as c:  # every node is killed on exit, failures too
        yield c


@pytest.fixture
async def conn(cluster: OwnCluster) -> AsyncIterator[Connection]:
    c = await connect(cluster.url)
    yield c
    await c.close()


async def keys_by_node(cluster: OwnCluster) -> dict[int, list[bytes]]:
    """Every key on every node (SCAN of each node directly, not through the cluster client)."""
    out: dict[int, list[bytes]] = {}
    for node in cluster.nodes:
        async with Redis(port=node.port) as r:
            out[node.port] = [k async for k in r.scan_iter(count=1000)]
    return out


async def test_a_replay_and_its_delivery_keep_every_key_in_one_slot(
    cluster: OwnCluster, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    tg = await FakeTelegram().start()
    monkeypatch.setenv(TOKEN_ENV, tg.token)
    try:
        store = Store(conn.redis, prefix="stressbot:replay")
        assert store.hash_tag and store.k_outbox == "{stressbot:replay}:outbox"
        cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": -1001, "charts": False}])
        episode = shared_path("data", "history", "episode-312.csv")
        result = await run_replay(ReplayOptions(files=[episode]), cfg, store, rules_for(cfg, None))
        outbox = [a for _, a in await store.alerts()]
        assert outbox and result.alerts
        report = await deliver_pending(cfg, store)
        assert report.complete and report.total("dead") == 0
        got = collections.Counter(
            m.group(1) for s in tg.sent if (m := re.search(r"id: (\S+)", s.visible))
        )
        route = cfg.notify.telegram.chats[0]
        assert got == collections.Counter(a.id for a in outbox if accepts(route, a))  # once
        # the ledger's parts (claims, leases, marks) and the command side's too
        ledger = Ledger(store)
        await ledger.mute("*", T0)
        await ledger.record_migration(-1001, -1002)
        await store.set_feed_status("kraken", {"state": "ok"})
        await store.add_ticks([Tick(T0, "BTC/USD", 1.0)])
    finally:
        await tg.stop()

    by_node = await keys_by_node(cluster)
    keys = [k.decode() for ks in by_node.values() for k in ks]
    assert len([p for p, ks in by_node.items() if ks]) == 1, by_node  # one node holds all
    assert all(k.startswith("{stressbot:replay}:") for k in keys), keys
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"stressbot:replay")}
    names = {k.split("}:", 1)[1] for k in keys}
    for expected in ("outbox", "checkpoint", "rules", "ticks", "feeds", "notify:sent:desk"):
        assert expected in names, sorted(names)
    assert any(n.startswith("series:") for n in names), sorted(names)
    assert len(names) >= 10, sorted(names)

    await store.clear()
    assert not any((await keys_by_node(cluster)).values())


async def test_the_live_engines_scripts_and_transactions_run_on_a_cluster(
    conn: Connection,
) -> None:
    store = Store(conn.redis, prefix="live")
    await store.add_ticks([Tick(T0 + i, "BTC/USD", 100.0 + i) for i in range(3)])  # Lua
    assert [t.value for _, t in await store.read_ticks("0-0")] == [100.0, 101.0, 102.0]
    a, _ = await store.acquire_engine_lease("host/1/a", 5.0)  # Lua: GET, INCR, SET PX
    assert a is not None and await store.renew_engine_lease(a, 5.0)
    alert = Alert(id="r@1", ts=T0, rule="r", pattern="custom", severity="info", summary="s")
    ids = await store.commit(  # the fenced commit script, with chart points
        Checkpoint("1-0", "f", T0, b"{}"),
        [alert],
        rule_states={"r": {"on": True}},
        latest={"BTC/USD": (T0, 100.0)},
        fence=a,
        series={"BTC/USD": [(T0, 100.0)]},
    )
    assert len(ids) == 1 and await store.series("BTC/USD") == [(T0, 100.0)]
    await store.set_engine_status({"owner": "host/1/a"}, fence=a)
    await store.release_engine_lease(a)
    b, _ = await store.acquire_engine_lease("host/2/b", 5.0)
    assert b is not None
    with pytest.raises(FencedOut):
        await store.commit(Checkpoint("2-0", "f", T0, b"{}"), [alert], fence=a)
    # the unfenced commit is a MULTI/EXEC (pipeline(transaction=True) on the cluster)
    ids = await store.commit(Checkpoint("3-0", "f", T0 + 1, b"{}"), [alert])
    assert len(ids) == 1 and len(await store.alerts()) == 2
    cp = await store.load_checkpoint()
    assert cp is not None and cp.position == "3-0"
    assert (await store.engine_status())["lease"] == b
    ledger = Ledger(store)  # the ledger's claim/lease scripts and transactions
    await store.ensure_group(ledger.group("desk"))
    owner = "host:1:x"
    assert await ledger.acquire_lease("desk", owner, 5.0) is None  # None: ours
    assert await ledger.acquire_lease("desk", "host:2:y", 5.0) == owner  # held by us
    assert await ledger.claim("desk", alert.id, owner, 5.0)
    assert await ledger.renew("desk", owner, 5.0, alert.id)  # a two-key script
    await store.clear()


async def test_without_the_hash_tag_a_cluster_refuses_the_commit(conn: Connection) -> None:
    """Why the tag: the same keys without it spread over slots, and Redis refuses the
    multi-key script and the transaction (redis-py checks the slots before sending)."""
    store = Store(conn.redis, prefix="untagged", hash_tag=False)
    assert len({key_slot(k.encode()) for k in (store.k_lease, store.k_outbox)}) == 2
    with pytest.raises((RedisError, RedisClusterException), match=r"(?i)slot"):
        await store.acquire_engine_lease("host/1/a", 5.0)
    with pytest.raises((RedisError, RedisClusterException), match=r"(?i)slot"):
        await store.commit(Checkpoint("1-0", "f", T0, b"{}"), fence="1:host/1/a")
    with pytest.raises((RedisError, RedisClusterException), match=r"(?i)slot"):
        await store.commit(Checkpoint("1-0", "f", T0, b"{}"), rule_states={"r": 1})


async def test_stressbot_replay_runs_unchanged_against_a_cluster(
    cluster: OwnCluster, tmp_path: Path
) -> None:
    """The command, with REDIS_URL=redis+cluster://... and no [redis] section at all."""
    cfg = tmp_path / "config.toml"
    cfg.write_text("[display]\ntimezone = 'UTC'\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "replay",
        "--quiet",
        "--config",
        str(cfg),
        "--jsonl",
        str(tmp_path / "alerts.jsonl"),
        str(shared_path("data", "history", "episode-312.csv")),
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": cluster.url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert lines
    keys = [k.decode() for ks in (await keys_by_node(cluster)).values() for k in ks]
    assert keys and all(k.startswith("{stressbot:") for k in keys), keys
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert any(k.endswith(":outbox") for k in keys)


async def test_the_engine_rides_out_the_failover_of_its_node(tmp_path: Path) -> None:
    """A cluster of 3 masters with a replica each; the live engine runs on it; the master
    that serves the prefix's slot is killed (SIGKILL) and its replica promoted (after the
    cluster's node timeout). The engine waits, resumes from the checkpoint, and the alert of
    the ticks written after the failover is raised once."""
    (tmp_path / "redis").mkdir()
    async with OwnCluster(tmp_path / "redis", replicas=1) as cluster:
        conn = await connect(cluster.url)
        store = Store(conn.redis, prefix="failover")
        svc = _leased_engine(tmp_path, store)
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await wait_until(lambda: svc.lease.value is not None, within=30, what="the lease")
            await store.add_ticks([Tick(T0 - 3 * H, "BTC/USD", 100.0)])
            await wait_until(lambda: _has_checkpoint(store), within=30, what="a checkpoint")
            owner = await cluster.owner_of(store.k_outbox)
            await owner.kill()
            t_kill = time.monotonic()
            await wait_until(
                lambda: _served_by_other(cluster, store, owner.port), within=30, what="promotion"
            )
            promoted = time.monotonic() - t_kill
            ticks = [Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)]
            ticks.append(Tick(T0, "BTC/USD", 90.0))
            await wait_until(lambda: _add(store, ticks), within=30, what="ticks written")
            await wait_until(lambda: _fired(store), within=30, what="the alert")
            fired = time.monotonic() - t_kill
            await asyncio.sleep(1.0)
            firing = [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
            assert len(firing) == 1, firing
            assert not task.done()
            assert svc.outages + svc.leaderships_lost >= 1  # it did notice the failover
            print(
                f"cluster failover: replica promoted {promoted:.1f} s after the kill, alert "
                f"in the outbox {fired:.1f} s after it; 1 alert, 0 duplicated, 0 lost"
            )
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
            await conn.close()


def _leased_engine(tmp_path: Path, store: Store) -> EngineService:
    """The live engine on `store` with RULE, a checkpoint per tick and a 2 s lease."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.toml").write_text(RULE)
    config = Config.model_validate({"engine": {"checkpoint_every": "0s", "max_lateness": "0s"}})
    return EngineService(
        config,
        store,
        load_rules(rules_dir, config.sessions),
        clock=lambda: T0 - 10 * H,
        lease=EngineLease(store, owner="test/1", ttl=2.0),
    )


async def _has_checkpoint(store: Store) -> bool:
    return await store.load_checkpoint() is not None


async def _served_by_other(cluster: OwnCluster, store: Store, dead: int) -> bool:
    return (await cluster.owner_of(store.k_outbox)).port != dead


async def _add(store: Store, ticks: list[Tick]) -> bool:
    try:
        await store.add_ticks(ticks)
    except Exception:
        return False
    return True


async def _fired(store: Store) -> bool:
    try:
        return any(a.kind is AlertKind.FIRING for _, a in await store.alerts())
    except Exception:
        return False


async def test_the_engine_waits_out_a_cluster_down(tmp_path: Path) -> None:
    """3 masters, no replicas: one of them (not the one serving the prefix) dies, and once
    the cluster notices (`cluster-node-timeout`) every node answers CLUSTERDOWN, for our slot
    too. The engine waits as for an outage (on main, ClusterDownError ended the engine
    task: "The cluster is down"); the node comes back, and the alert of the ticks written
    after it is raised once."""
    (tmp_path / "redis").mkdir()
    async with OwnCluster(tmp_path / "redis") as cluster:
        conn = await connect(cluster.url)
        store = Store(conn.redis, prefix="down")
        svc = _leased_engine(tmp_path, store)
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await wait_until(lambda: svc.lease.value is not None, within=30, what="the lease")
            await store.add_ticks([Tick(T0 - 3 * H, "BTC/USD", 100.0)])
            await wait_until(lambda: _has_checkpoint(store), within=30, what="a checkpoint")
            owner = await cluster.owner_of(store.k_outbox)
            other = next(n for n in cluster.nodes if n is not owner)
            await other.kill()
            await wait_until(lambda: _cluster_down(owner.port), within=30, what="CLUSTERDOWN")
            await asyncio.sleep(1.0)
            assert not task.done(), task
            await other.start()
            ticks = [Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)]
            ticks.append(Tick(T0, "BTC/USD", 90.0))
            await wait_until(lambda: _add(store, ticks), within=30, what="ticks written")
            await wait_until(lambda: _fired(store), within=60, what="the alert")
            await asyncio.sleep(1.0)
            firing = [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
            assert len(firing) == 1, firing
            assert not task.done()
            assert svc.outages + svc.leaderships_lost >= 1
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
            await conn.close()


async def _cluster_down(port: int) -> bool:
    async with Redis(port=port, socket_connect_timeout=1.0) as r:
        info = await r.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:fail" in text
