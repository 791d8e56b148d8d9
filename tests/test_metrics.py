"""/metrics, /healthz and /readyz: what the store holds, scraped over HTTP from a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.core.models import Alert, Tick
from bot.runtime.metrics import MetricsServer
from bot.store.redis_store import Checkpoint, Store


@pytest.fixture
async def server(store: Store) -> AsyncIterator[str]:
    srv = MetricsServer(store, "127.0.0.1", 0, status_interval=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(srv.run(stop))
    await asyncio.wait_for(srv.ready.wait(), 10)
    yield f"http://127.0.0.1:{srv.bound_port}"
    stop.set()
    await asyncio.wait_for(task, 10)


async def _get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r,
    ):
        return r.status, await r.text()


async def _samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await _get(f"{base}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _feed(state: str, ticks: int, updated: float, **extra: object) -> dict[str, object]:
    return {
        "state": state,
        "ticks": ticks,
        "msgs": ticks + 1,
        "errors": 2,
        "dropped": {"stale": 3},
        "last_tick_age": 1.5,
        "kind": "kraken",
        "serving": ["BTC/USD"],
        "updated": updated,
        **extra,
    }


async def test_metrics_show_feed_counters_and_states(store: Store, server: str) -> None:
    await store.set_feed_status("kraken", _feed("ok", 41, time.time()))
    m = await _samples(server)
    assert m[("stressbot_redis_up", ())] == 1
    assert m[("stressbot_feed_ticks_total", (("feed", "kraken"),))] == 41
    assert m[("stressbot_feed_rejects_total", (("feed", "kraken"), ("reason", "stale")))] == 3
    assert m[("stressbot_feed_state", (("feed", "kraken"), ("state", "ok")))] == 1
    assert m[("stressbot_feed_state", (("feed", "kraken"), ("state", "down")))] == 0
    assert m[("stressbot_symbol_source", (("feed", "kraken"), ("symbol", "BTC/USD")))] == 1


async def test_counters_move_between_scrapes(store: Store, server: str) -> None:
    await store.set_feed_status("kraken", _feed("ok", 10, time.time()))
    before = await _samples(server)
    await store.set_feed_status("kraken", _feed("ok", 25, time.time()))
    after = await _samples(server)
    key = ("stressbot_feed_ticks_total", (("feed", "kraken"),))
    assert (before[key], after[key]) == (10, 25)


async def test_a_feed_whose_process_stopped_reporting_is_not_shown_ok(
    store: Store, server: str
) -> None:
    await store.set_feed_status("kraken", _feed("ok", 41, time.time() - 600))
    m = await _samples(server)
    assert m[("stressbot_feed_state", (("feed", "kraken"), ("state", "ok")))] == 0
    assert m[("stressbot_feed_state", (("feed", "kraken"), ("state", "stale_report")))] == 1
    status, body = await _get(f"{server}/readyz")
    assert status == 503 and "no feed is ok" in body


async def test_engine_lag_backlog_and_outbox_per_destination(store: Store, server: str) -> None:
    await store.add_ticks([Tick(time.time() - 5, "BTC/USD", 50_000.0, "kraken")])
    applied: list[tuple[bytes, object]] = await store.redis.xrange(store.k_ticks)  # type: ignore[assignment]
    await store.add_ticks([Tick(time.time(), "BTC/USD", 50_010.0, "kraken")])
    position = applied[0][0].decode()
    alert = Alert(
        "crypto_crash@1", time.time() - 60, "crypto_crash", "crypto_crash", "warning", "x"
    )
    await store.commit(
        Checkpoint(position, "fp", time.time() - 60, b"{}"),
        [alert, alert],
        rule_states={"crypto_crash": {"state": "firing"}},
    )
    await store.ensure_group("desk")
    await store.read_group("desk", "c1", count=1, block_ms=None)
    m = await _samples(server)
    assert m[("stressbot_engine_lag_seconds", ())] >= 60
    assert m[("stressbot_engine_backlog_seconds", ())] >= 0
    assert m[("stressbot_tick_stream_length", ())] == 2
    assert m[("stressbot_outbox_length", ())] == 2
    assert m[("stressbot_outbox_pending", (("destination", "desk"),))] == 1
    assert m[("stressbot_outbox_lag", (("destination", "desk"),))] == 1
    assert m[("stressbot_rule_state", (("rule", "crypto_crash"), ("state", "firing")))] == 1


async def test_ready_when_a_feed_is_ok_and_redis_answers(store: Store, server: str) -> None:
    await store.set_feed_status("kraken", _feed("down", 0, time.time()))
    assert (await _get(f"{server}/readyz"))[0] == 503
    await store.set_feed_status("okx", _feed("ok", 5, time.time()))
    assert await _get(f"{server}/readyz") == (200, "ready\n")
    assert await _get(f"{server}/healthz") == (200, "ok\n")


async def test_readyz_flips_when_redis_goes_away() -> None:
    gone = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    srv = MetricsServer(Store(gone, prefix="test:gone"), "127.0.0.1", 0)
    stop = asyncio.Event()
    task = asyncio.create_task(srv.run(stop))
    try:
        await asyncio.wait_for(srv.ready.wait(), 10)
        base = f"http://127.0.0.1:{srv.bound_port}"
        status, body = await _get(f"{base}/readyz")
        assert status == 503 and "Redis unavailable" in body
        assert (await _get(f"{base}/healthz"))[0] == 200
        m = await _samples(base)
        assert m[("stressbot_redis_up", ())] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await gone.aclose()


async def test_a_taken_port_leaves_the_bot_running_without_metrics(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = MetricsServer(store, "127.0.0.1", 0)
    stop = asyncio.Event()
    t1 = asyncio.create_task(first.run(stop))
    await asyncio.wait_for(first.ready.wait(), 10)
    assert first.bound_port is not None
    second = MetricsServer(store, "127.0.0.1", first.bound_port)
    t2 = asyncio.create_task(second.run(stop))
    await asyncio.wait_for(second.ready.wait(), 10)
    assert not t2.done()  # still running: waits for stop like every service
    assert "metrics: cannot listen on 127.0.0.1" in caplog.text
    stop.set()
    await asyncio.wait_for(asyncio.gather(t1, t2), 10)


async def test_parked_alerts_and_failing_per_destination_and_ticks_per_symbol(
    store: Store,
) -> None:
    from bot.notify.ledger import OUTAGE, Ledger
    from bot.runtime.metrics import render
    from bot.runtime.snapshot import read_snapshot

    now = time.time()
    await store.set_feed_status(
        "kraken", _feed("ok", 7, now, symbol_ticks={"BTC/USD": 5, "ETH/USD": 2})
    )
    await store.set_feed_status("gone", _feed("ok", 1, now - 600, serving=["ETH/USD"]))
    ledger = Ledger(store)
    for aid in ("a1", "a2"):
        await ledger.park(
            "desk",
            Alert(aid, now, "crypto_crash", "crypto_crash", "warning", "x"),
            entry_id=None,
            entry="1-0",
            reason=OUTAGE,
            error="refused",
            tries=1,
            mark=None,
            now=now,
        )
    await ledger.outage_begin("desk", now, "refused", gap=600)
    from bot.notify.silences import Matcher, Silences

    await Silences(store).add([Matcher.parse("rule=x")], ends=now + 60)
    snap = await read_snapshot(store, destinations=["desk", "quiet"])
    m = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(render(snap, 2.0).decode())
        for s in fam.samples
    }
    assert m[("stressbot_parked_alerts", (("destination", "desk"),))] == 2
    assert m[("stressbot_parked_alerts", (("destination", "quiet"),))] == 0
    assert m[("stressbot_silences", (("state", "active"),))] == 1
    assert m[("stressbot_silences", (("state", "pending"),))] == 0
    assert m[("stressbot_destination_failing", (("destination", "desk"),))] == 1
    assert m[("stressbot_destination_failing", (("destination", "quiet"),))] == 0
    sym = "stressbot_feed_symbol_ticks_total"
    assert m[(sym, (("feed", "kraken"), ("symbol", "BTC/USD")))] == 5
    assert m[(sym, (("feed", "kraken"), ("symbol", "ETH/USD")))] == 2
    # a feed whose process is gone serves nothing
    assert ("stressbot_symbol_source", (("feed", "gone"), ("symbol", "ETH/USD"))) not in m
    assert m[("stressbot_symbol_source", (("feed", "kraken"), ("symbol", "BTC/USD")))] == 1


async def test_readyz_follows_this_process_engine_role(store: Store) -> None:
    from collections import Counter
    from types import SimpleNamespace

    from bot.engine.state import EngineStats
    from bot.runtime.leader import EngineLease
    from bot.runtime.metrics import Local
    from tests.fake_feeds import wait_until

    lease = EngineLease(store, owner="test/me", ttl=1.0)
    assert await lease.acquire(asyncio.Event())
    engine = SimpleNamespace(stats=EngineStats(evaluations=7))
    view = SimpleNamespace(lease=lease, engine=engine, committed=Counter({("r", "firing"): 2}))
    srv = MetricsServer(store, "127.0.0.1", 0, local=Local(engine=view))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(srv.run(stop))
    try:
        await asyncio.wait_for(srv.ready.wait(), 10)
        base = f"http://127.0.0.1:{srv.bound_port}"
        assert await _get(f"{base}/readyz") == (200, "ready (leader)\n")
        m = await _samples(base)
        assert m[("stressbot_engine_role", (("role", "leader"),))] == 1
        assert m[("stressbot_engine_evaluations_total", ())] == 7
        assert m[("stressbot_alerts_total", (("kind", "firing"), ("rule", "r")))] == 2

        # nothing renews the lease (a paused process): once our own view of it runs out, this
        # process is no leader, whatever Redis still says
        async def lapsed() -> bool:
            status, body = await _get(f"{base}/readyz")
            return status == 503 and "neither leader nor standby" in body

        await wait_until(lapsed, within=10, what="/readyz 503 after the lease ran out")
        m = await _samples(base)
        assert m[("stressbot_engine_role", (("role", "none"),))] == 1
        assert ("stressbot_engine_evaluations_total", ()) not in m  # only a leader's count

        # standing by behind an engine that holds the lease is ready; behind none it is not
        assert lease.value is not None
        await store.release_engine_lease(lease.value)
        lease.value, lease.holder = None, "1:other"
        status, body = await _get(f"{base}/readyz")
        assert status == 503 and "no engine holds the engine lease" in body
        other, _ = await store.acquire_engine_lease("other", 5.0)
        assert other is not None
        assert await _get(f"{base}/readyz") == (200, "ready (standby)\n")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_parked_alerts_dropped_past_max_parked_are_exported_per_destination(
    store: Store,
) -> None:
    from bot.notify.ledger import OUTAGE, Ledger
    from bot.runtime.metrics import render
    from bot.runtime.snapshot import read_snapshot

    now = time.time()
    ledger = Ledger(store)
    for i, aid in enumerate(("a1", "a2", "a3")):
        await ledger.park(
            "desk",
            Alert(aid, now + i, "crypto_crash", "crypto_crash", "warning", "x"),
            entry_id=None,
            entry=f"{i + 1}-0",
            reason=OUTAGE,
            error="refused",
            tries=1,
            mark=None,
            now=now,
        )
    assert await ledger.shed("desk", 1) == ["a1", "a2"]  # what max_parked = 1 drops
    snap = await read_snapshot(store, destinations=["desk", "quiet"])
    m = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(render(snap, 2.0).decode())
        for s in fam.samples
    }
    assert m[("stressbot_parked_dropped", (("destination", "desk"),))] == 2
    assert m[("stressbot_parked_dropped", (("destination", "quiet"),))] == 0
    assert m[("stressbot_parked_alerts", (("destination", "desk"),))] == 1
