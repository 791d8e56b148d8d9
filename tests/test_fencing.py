"""Issue 11, "unfenced series/status writes": every write the engine leader makes is fenced by
its lease token, so a leader paused past its lease writes nothing once another took over.

The writes: the checkpoint, the outbox, rule states and latest values (already one fenced
script), the chart series (were a separate unfenced pipeline after the commit) and the
engine's status record (was a plain SET). On today's main a paused old leader could still
write chart points and overwrite the new leader's status record with its own.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bot.core.models import Alert, AlertKind, Tick
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from bot.runtime.leader import EngineLease
from bot.runtime.live import EngineService
from bot.store.redis_store import Checkpoint, FencedOut, Store
from tests.fake_feeds import wait_until
from tests.test_engine_lease import RULE

T0 = 1_700_000_000.0
H = 3600.0


async def _take_over(store: Store, old: str) -> str:
    """`old`'s lease lapsed (its process was paused) and another engine took it."""
    assert await store.redis.delete(store.k_lease) == 1
    new, _ = await store.acquire_engine_lease("host/2/new", 5.0)
    assert new is not None and new != old
    return new


async def test_a_stale_fence_writes_no_chart_point(store: Store) -> None:
    old, _ = await store.acquire_engine_lease("host/1/old", 5.0)
    assert old is not None
    cp = Checkpoint("1-0", "f", T0, b"{}")
    await store.commit(cp, fence=old, series={"BTC/USD": [(T0, 1.0)]}, keep_after=T0 - H)
    assert await store.series("BTC/USD") == [(T0, 1.0)]  # written with the checkpoint
    new = await _take_over(store, old)
    alert = Alert(id="x@1", ts=T0, rule="x", pattern="custom", severity="info", summary="s")
    with pytest.raises(FencedOut):
        await store.commit(
            Checkpoint("2-0", "f", T0 + 1, b"{}"),
            [alert],
            rule_states={"x": {"on": True}},
            latest={"BTC/USD": (T0 + 1, 2.0)},
            fence=old,
            series={"BTC/USD": [(T0 + 1, 2.0)], "ETH/USD": [(T0 + 1, 3.0)]},
            keep_after=T0 + 0.5,  # would also have trimmed the first point
        )
    assert await store.series("BTC/USD") == [(T0, 1.0)]
    assert await store.series("ETH/USD") == []
    assert await store.alerts() == [] and await store.rule_states() == {}
    assert await store.latest() == {}
    # the new leader's commit goes through, trimming as asked
    await store.commit(
        Checkpoint("2-0", "f", T0 + 1, b"{}"),
        fence=new,
        series={"BTC/USD": [(T0 + 1, 2.0)]},
        keep_after=T0 + 0.5,
    )
    assert await store.series("BTC/USD") == [(T0 + 1, 2.0)]


async def test_a_stale_fence_cannot_overwrite_the_engine_status(store: Store) -> None:
    old, _ = await store.acquire_engine_lease("host/1/old", 5.0)
    assert old is not None
    await store.set_engine_status({"owner": "host/1/old", "state": "live"}, fence=old)
    new = await _take_over(store, old)
    await store.set_engine_status({"owner": "host/2/new", "state": "resumed"}, fence=new)
    with pytest.raises(FencedOut, match=r"held by .*host/2/new"):
        await store.set_engine_status({"owner": "host/1/old", "state": "live"}, fence=old)
    status = await store.engine_status()
    assert status["owner"] == "host/2/new" and status["lease"] == new


async def test_a_paused_leader_leaves_the_new_leaders_status_and_series_alone(
    store: Store, tmp_path: Path
) -> None:
    """Two engines; the leader is paused past its lease (no renewals, its own clock check
    defeated, as when SIGSTOP lands between the check and the write). After the takeover it
    sees an edited rule file, and reloading it writes the status record: that write is
    refused (on main it overwrote the new leader's record with the old one's), the paused
    engine stands by, and the alert of the ticks that follow is raised once, by the new
    leader."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.toml").write_text(RULE)
    config = Config.model_validate({"engine": {"checkpoint_every": "0s", "max_lateness": "0s"}})
    stop = asyncio.Event()
    svcs = [
        EngineService(
            config,
            store,
            load_rules(rules_dir, config.sessions),
            rules_dir=rules_dir,
            clock=lambda: T0 - 10 * H,
            lease=EngineLease(store, owner=f"test/{i}", ttl=1.0),
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(s.run(stop)) for s in svcs]
    try:
        await wait_until(
            lambda: sum(s.lease.value is not None for s in svcs) == 1, within=30, what="a leader"
        )
        leader, standby = svcs if svcs[0].lease.value is not None else svcs[::-1]
        leader.lease.paused = True
        leader.lease.valid_until = math.inf
        await wait_until(lambda: standby.lease.value is not None, within=30, what="a takeover")
        writes: list[tuple[str, bool]] = []  # (owner in the record, written)
        real = store.set_engine_status

        async def spy(status: dict[str, object], *, fence: str | None = None) -> None:
            try:
                await real(status, fence=fence)
            except FencedOut:
                writes.append((str(status.get("owner")), False))
                raise
            writes.append((str(status.get("owner")), True))

        store.set_engine_status = spy  # type: ignore[method-assign]
        # an edited rule file: the paused leader reloads it and records that in the status
        (rules_dir / "r.toml").write_text(RULE.replace("-5", "-4"))
        await wait_until(lambda: leader.leaderships_lost == 1, within=30, what="the fencing")
        assert (leader.lease.owner, False) in writes
        assert (leader.lease.owner, True) not in writes
        assert leader.lease.value is None  # it stands by
        await store.add_ticks([Tick(T0 - 2 * H, "BTC/USD", 100.0), Tick(T0 - H, "BTC/USD", 90.0)])
        await store.add_ticks([Tick(T0, "BTC/USD", 90.0)])
        await wait_until(
            lambda: _owner_is(store, standby.lease.owner), within=30, what="the new record"
        )
        await asyncio.sleep(1.0)
        status = await store.engine_status()
        assert status["owner"] == standby.lease.owner and status["lease"] == standby.lease.value
        firing = [a for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
        assert len(firing) == 1
        assert (leader.lease.owner, True) not in writes
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def _owner_is(store: Store, owner: str) -> bool:
    return (await store.engine_status()).get("owner") == owner
