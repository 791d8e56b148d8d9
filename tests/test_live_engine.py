"""The live engine service: consumes ticks from Redis, survives restarts, turns feed health
into alerts, and keeps the last good rules when an edit is broken."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.core.models import AlertKind, Tick
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from bot.runtime.live import EngineService
from bot.store.redis_store import Store

H = 3600.0
T0 = 1_700_000_000.0

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


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "r.toml").write_text(RULE)
    return tmp_path


def service(store: Store, rules_dir: Path, now: float = T0 - 10 * H) -> EngineService:
    """An engine service whose wall clock stands at `now` (its first start, by default well
    before the ticks these tests send, so they count as live ticks, not warm-up history)."""
    # feed alerts without their pending period and group wait (tests/test_feed_alerts.py)
    engine = {"checkpoint_every": "0s", "max_lateness": "0s"}
    engine |= {"feed_alert_after": "0s", "feed_alert_group": "0s"}
    config = Config.model_validate({"engine": engine})
    return EngineService(
        config,
        store,
        load_rules(rules_dir, config.sessions),
        rules_dir=rules_dir,
        clock=lambda: now,
    )


async def until(cond: Callable[[], object], limit: float = 10.0) -> None:
    """Wait until `cond()` (or the awaitable it returns) is true."""
    async with asyncio.timeout(limit):
        while True:
            v = cond()
            if inspect.isawaitable(v):
                v = await v
            if v:
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[EngineService], asyncio.Event]]:
    tasks: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    def start(svc: EngineService) -> asyncio.Event:
        stop = asyncio.Event()
        tasks.append((asyncio.create_task(svc.run(stop)), stop))
        return stop

    yield start
    for t, stop in tasks:
        stop.set()
        await asyncio.wait_for(t, 10)


async def firing_ids(store: Store) -> list[str]:
    return [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]


async def test_ticks_from_redis_raise_an_alert_in_the_outbox(
    store: Store, rules_dir: Path, running: Callable[[EngineService], asyncio.Event]
) -> None:
    svc = service(store, rules_dir)
    running(svc)
    await store.add_ticks(
        [
            Tick(T0 - 2 * H, "BTC/USD", 100.0, "x"),
            Tick(T0 - H, "BTC/USD", 90.0, "x"),
            Tick(T0, "BTC/USD", 90.0, "x"),
        ]
    )  # moves event time past T0 - H

    async def fired() -> bool:
        return bool(await firing_ids(store))

    await until(fired)
    assert await firing_ids(store) == ["btc_drop@2023-11-14T21:13:20Z"]


async def test_restart_continues_after_the_last_applied_tick(store: Store, rules_dir: Path) -> None:
    await store.add_ticks([Tick(T0 - 3 * H, "BTC/USD", 100.0), Tick(T0 - 2 * H, "BTC/USD", 90.0)])
    for _ in range(2):  # the second run must not raise the same alert again
        svc = service(store, rules_dir)
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        await until(lambda s=svc: s.position != "0-0")
        stop.set()
        await asyncio.wait_for(task, 10)
    await store.add_ticks([Tick(T0 - H, "BTC/USD", 80.0)])
    svc = service(store, rules_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await until(lambda: svc.ticks_applied == 1)
    stop.set()
    await asyncio.wait_for(task, 10)
    ids = await firing_ids(store)
    assert len(ids) == len(set(ids)) == 1


async def test_feed_going_stale_and_recovering_is_alerted_and_resolved(
    store: Store,
    rules_dir: Path,
    running: Callable[[EngineService], asyncio.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.runtime.live.FEED_POLL", 0.05)
    running(service(store, rules_dir))
    await store.set_feed_status("kraken", {"state": "ok", "since": T0})
    await asyncio.sleep(0.2)
    await store.set_feed_status(
        "kraken",
        {"state": "stale", "since": T0, "last_tick_ts": T0 - 90, "detail": "no data for 90 s"},
    )

    async def n_alerts(n: int) -> bool:
        return len(await store.alerts()) >= n

    await until(lambda: n_alerts(1))
    await store.set_feed_status("kraken", {"state": "ok", "since": T0})
    await until(lambda: n_alerts(2))
    alerts = [a for _, a in await store.alerts()]
    assert [(a.pattern, a.kind) for a in alerts] == [
        ("feed_health", AlertKind.FIRING),
        ("feed_health", AlertKind.RESOLVED),
    ]
    assert "stale" in alerts[0].summary and "no data for 90 s" in alerts[0].summary


async def test_a_broken_rules_edit_keeps_the_last_good_rules(
    store: Store, rules_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("bot.runtime.live.RULES_POLL", 0.0)
    svc = service(store, rules_dir)
    (rules_dir / "r.toml").write_text(RULE.replace('"BTC/USD", "1h")', '"BTCUSD", "1h")'))
    os.utime(rules_dir / "r.toml", (T0, T0))
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await until(lambda: "keeping the last good ones" in caplog.text)
    assert [r.id for r in svc.rules.rules] == ["btc_drop"]
    assert "r.toml" in caplog.text and "unknown symbol 'BTCUSD'" in caplog.text
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_good_rules_edit_is_picked_up_without_losing_history(
    store: Store, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.runtime.live.RULES_POLL", 0.0)
    await store.add_ticks([Tick(T0 - 2 * H, "BTC/USD", 100.0)])
    svc = service(store, rules_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await until(lambda: svc.ticks_applied == 1)
    (rules_dir / "r.toml").write_text(RULE.replace("btc_drop", "btc_fall"))
    os.utime(rules_dir / "r.toml", (T0, T0))
    await until(lambda: [r.id for r in svc.rules.rules] == ["btc_fall"])
    assert svc.engine.series["BTC/USD"].values == [100.0]
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_first_start_treats_older_ticks_as_history_that_raises_nothing(
    store: Store, rules_dir: Path
) -> None:
    await store.add_ticks(
        [
            Tick(T0 - 3 * H, "BTC/USD", 100.0),
            Tick(T0 - 2 * H, "BTC/USD", 80.0),
            Tick(T0 - H, "BTC/USD", 70.0),
        ]
    )
    svc = service(store, rules_dir, now=T0)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await until(lambda: svc.ticks_applied == 3)
    assert await firing_ids(store) == []  # last week's crash is not news
    await store.add_ticks([Tick(T0 + 60, "BTC/USD", 60.0), Tick(T0 + 120, "BTC/USD", 60.0)])
    await until(lambda: svc.ticks_applied == 5)

    async def fired() -> bool:
        return bool(await firing_ids(store))

    await until(fired)  # the windows were warm: the first live drop alerts at once
    stop.set()
    await asyncio.wait_for(task, 10)
