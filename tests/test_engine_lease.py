"""Issue 11: one active engine at a time, by a lease in Redis with a fencing token.

Two EngineService instances on one store: only one commits. A leader paused past its lease
(its renewals suspended, and its own clock check defeated, as when SIGSTOP lands between the
check and the write) has its commit refused once the other took over, and stands by. Real
`stressbot run` subprocesses: kill -9 of the leader is taken over within a few seconds, a
SIGSTOPped leader resumed with SIGCONT stands by, and the alert is in the outbox once.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.cli.feeds import engine_line
from bot.core.models import Alert, AlertKind, Tick
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from bot.runtime.leader import EngineLease
from bot.runtime.live import EngineService
from bot.runtime.metrics import read_snapshot, render
from bot.store.redis_store import Checkpoint, FencedOut, Store
from tests.conftest import shared_path
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
from tests.test_live_redis_restart import (
    PREFIX,
    firing,
    start_bot,
    stop_bot,
    tolerant,
    write_config,
)

T0 = 1_700_000_000.0
H = 3600.0
RULE = """
[[rule]]
id = "btc_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "1h") < -5'
for = "0s"
cooldown = "1d"
summary = "BTC {r:+.1f}%"
[rule.values]
r = 'ret("BTC/USD", "1h")'
"""


async def test_a_stale_fence_writes_nothing(store: Store) -> None:
    a, holder = await store.acquire_engine_lease("host/1/a", 1.0)
    assert a is not None and a.endswith(":host/1/a") and holder == a
    b, holder = await store.acquire_engine_lease("host/2/b", 1.0)
    assert b is None and holder == a  # held: refused, and told who holds it
    alert = Alert(id="x@1", ts=T0, rule="x", pattern="custom", severity="info", summary="s")
    cp = Checkpoint("1-0", "f", T0, b"{}")
    assert len(await store.commit(cp, [alert], fence=a)) == 1
    await store.redis.delete(store.k_lease)  # a's lease lapsed (its process was paused)
    b, _ = await store.acquire_engine_lease("host/2/b", 1.0)
    assert b is not None and int(b.split(":")[0]) > int(a.split(":")[0])  # a newer token
    with pytest.raises(FencedOut):
        await store.commit(Checkpoint("2-0", "f", T0 + 1, b"{}"), [alert], fence=a)
    assert len(await store.alerts()) == 1
    cp_now = await store.load_checkpoint()
    assert cp_now is not None and cp_now.position == "1-0"
    # the old owner asking again gets nothing while b holds it
    again, _ = await store.acquire_engine_lease("host/1/a", 1.0)
    assert again is None


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "r.toml").write_text(RULE)
    return d


@pytest.fixture
async def two(
    store: Store, rules_dir: Path
) -> AsyncIterator[Callable[[], tuple[EngineService, EngineService]]]:
    config = Config.model_validate({"engine": {"checkpoint_every": "0s", "max_lateness": "0s"}})
    stop = asyncio.Event()
    svcs = [
        EngineService(
            config,
            store,
            load_rules(rules_dir, config.sessions),
            clock=lambda: T0 - 10 * H,  # the ticks sent count as live, not warm-up history
            lease=EngineLease(store, owner=f"test/{i}", ttl=1.0),
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(s.run(stop)) for s in svcs]

    def leader_standby() -> tuple[EngineService, EngineService]:
        a, b = svcs
        assert not any(t.done() for t in tasks)
        return (a, b) if a.lease.value is not None else (b, a)

    await wait_until(
        lambda: sum(s.lease.value is not None for s in svcs) == 1, within=30, what="a leader"
    )
    yield leader_standby
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_two_engines_only_one_commits(
    store: Store, two: Callable[[], tuple[EngineService, EngineService]]
) -> None:
    leader, standby = two()
    await store.add_ticks([Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)])
    await store.add_ticks([Tick(T0, "BTC/USD", 90.0)])
    await wait_until(lambda: _fired(store), within=30, what="the alert")
    await asyncio.sleep(1.0)
    assert len([a for _, a in await store.alerts() if a.kind is AlertKind.FIRING]) == 1
    assert leader.ticks_applied >= 2 and standby.ticks_applied == 0
    status = await store.engine_status()
    assert status["role"] == "leader" and status["lease"] == leader.lease.value
    assert status["standby"] == [standby.lease.owner]
    assert status["fence"] == leader.lease.value
    line = engine_line(status)
    assert line.startswith("engine: leader test/") and "1 standing by" in line, line
    assert "live" in line or "resumed" in line or "started" in line, line
    snap = await read_snapshot(store)
    assert snap.engine_lease == leader.lease.value
    assert snap.engine_standby == [standby.lease.owner]
    assert b"stressbot_engine_leader 1.0" in render(snap, 2.0)


async def test_paused_leader_is_fenced_and_stands_by(
    store: Store, two: Callable[[], tuple[EngineService, EngineService]]
) -> None:
    leader, standby = two()
    old = leader.lease.value
    leader.lease.paused = True  # renews nothing, as if SIGSTOPped ...
    leader.lease.valid_until = math.inf  # ... between its own check and its write
    await wait_until(lambda: standby.lease.value is not None, within=30, what="the takeover")
    assert leader.lease.value == old  # it still believes it leads
    await store.add_ticks([Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)])
    await store.add_ticks([Tick(T0, "BTC/USD", 90.0)])
    await wait_until(lambda: leader.leaderships_lost == 1, within=30, what="the fenced commit")
    leader.lease.paused = False
    await wait_until(lambda: _fired(store), within=30, what="the alert")
    await asyncio.sleep(1.5)
    assert len([a for _, a in await store.alerts() if a.kind is AlertKind.FIRING]) == 1
    assert leader.lease.value is None and standby.lease.value is not None
    assert (await store.engine_status())["lease"] == standby.lease.value


async def _fired(store: Store) -> bool:
    return any(a.kind is AlertKind.FIRING for _, a in await store.alerts())


def _pid_of(lease: str | None) -> int | None:
    if not lease:
        return None
    return int(lease.split(":", 1)[1].split("/")[1])


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_kill_9_and_sigstop_of_the_leader_subprocess(tmp_path: Path) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)
    drop_at: list[float] = []  # every connection (one per bot) drops at the same moment

    def frames(pair: str, cid: int, i: int) -> str:
        steps = min(int((time.monotonic() - drop_at[0]) / 0.05), 12) if drop_at else 0
        return kraken_ticker_frame(template, cid, pair, 50_000.0 * (1 - 0.01 * steps))

    async with (
        OwnRedis(tmp_path) as server,
        FakeKraken(rec, frames, Script(Behaviour(interval=0.02))) as fake,
    ):
        cfg, rules = write_config(tmp_path, fake.url)
        client = Redis.from_url(server.url, socket_timeout=10.0)
        store = Store(client, prefix=PREFIX)
        procs = [await start_bot(cfg, rules, server.url)]
        logs: list[str] = []
        figures: dict[str, float] = {}
        try:

            async def holder() -> int | None:
                return _pid_of(await store.engine_lease())

            async def led_by(pid: int) -> bool:
                return await holder() == pid

            await wait_until(lambda: led_by(procs[0].pid), within=60, what="the first leader")
            procs.append(await start_bot(cfg, rules, server.url))
            await wait_until(
                tolerant(lambda: _standing_by(store, procs[1].pid)), within=60, what="a standby"
            )
            # kill -9 of the leader: the standby takes over from the checkpoint
            procs[0].kill()
            killed = time.monotonic()
            await wait_until(lambda: led_by(procs[1].pid), within=30, what="the takeover")
            figures["kill -9 takeover s"] = time.monotonic() - killed
            logs.append((await stop_bot(procs[0]))[1])
            # SIGSTOP of the new leader past its lease, a third instance takes over; SIGCONT
            procs.append(await start_bot(cfg, rules, server.url))
            await wait_until(
                tolerant(lambda: _standing_by(store, procs[2].pid)), within=60, what="a standby"
            )
            procs[1].send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await wait_until(lambda: led_by(procs[2].pid), within=30, what="the takeover")
            figures["SIGSTOP takeover s"] = time.monotonic() - stopped
            procs[1].send_signal(signal.SIGCONT)
            await wait_until(
                tolerant(lambda: _standing_by(store, procs[1].pid)),
                within=30,
                what="the resumed old leader to stand by",
            )
            assert await holder() == procs[2].pid
            drop_at.append(time.monotonic())
            await wait_until(
                lambda: _any(firing(store)), within=60, what="the rule to fire after takeovers"
            )
            await asyncio.sleep(3.0)
            assert len(await firing(store)) == 1
        finally:
            for p in procs[1:]:
                if p.returncode is None:
                    p.send_signal(signal.SIGCONT)
                logs.append((await stop_bot(p))[1])
            await client.aclose()
    joined = "\n----\n".join(x[-3000:] for x in logs)
    assert "standing by" in joined, joined
    assert all(p.returncode in (0, -signal.SIGKILL) for p in procs), joined
    print(f"engine lease: {figures}")
    assert figures["kill -9 takeover s"] < 15 and figures["SIGSTOP takeover s"] < 15


async def _standing_by(store: Store, pid: int) -> bool:
    return any(f"/{pid}/" in o for o in (await store.engine_status()).get("standby", []))


async def _any(ids: object) -> bool:
    assert asyncio.iscoroutine(ids)
    return len(await ids) >= 1
