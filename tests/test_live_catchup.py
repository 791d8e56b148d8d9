"""The live engine service on real Redis: a backlog left by downtime is evaluated on event time
whatever the batch size, input trimmed from the stream is reported and marked as a gap, and
(property) any mix of live ticks, downtime backlogs, restarts and batch sizes gives the alerts
of feeding the same ticks in order."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from bot.cli.feeds import input_lost_lines
from bot.core.models import Alert, AlertKind, Tick
from bot.engine.engine import Engine
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from bot.runtime.live import EngineService
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL
from tests.tick_gen import GAP_AFTER, Market, expand, markets, property_rules_dir

H = 3600.0
T0 = 1_700_000_000.0

RULE = """
[[rule]]
id = "btc_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "1h") < -10'
for = "0s"
cooldown = "1d"
summary = "BTC {r:+.1f}% in 1h"
[rule.values]
r = 'ret("BTC/USD", "1h")'
"""


class Wall:
    """The service's wall clock, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(store: Store, rules_dir: Path, wall: Wall, **engine: object) -> EngineService:
    config = Config.model_validate(
        {"engine": {"checkpoint_every": "0s", "max_lateness": "0s", **engine}}
    )
    return EngineService(config, store, load_rules(rules_dir, config.sessions), clock=wall)


async def run_until_applied(svc: EngineService, store: Store) -> None:
    """Run the service until it has applied every tick in the stream, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    newest = await store.redis.xrevrange(store.k_ticks, count=1)
    last = newest[0][0].decode() if newest else ""
    async with asyncio.timeout(60):
        while last and not task.done():
            if svc.position == last:
                break
            await asyncio.sleep(0.01)
        if not last:
            await asyncio.sleep(0.3)  # an empty stream: let it start (and checkpoint) once
    stop.set()
    await asyncio.wait_for(task, 30)


def backlog() -> list[Tick]:
    """Three hours of BTC every 10 s; 1.3 h in it falls 12% in 16 minutes and stays there."""
    out = []
    for k in range(3 * 360):
        t = T0 + 10.0 * k
        drop = min(max((t - T0 - 1.3 * H) / 960.0, 0.0), 1.0)
        out.append(Tick(t, "BTC/USD", round(100.0 * (1 - 0.12 * drop), 4), "x"))
    return out


@pytest.mark.parametrize("batch", [7, 100, 5000])
async def test_defect2_a_backlog_after_downtime_is_evaluated_on_event_time(
    store: Store, tmp_path: Path, batch: int
) -> None:
    (tmp_path / "r.toml").write_text(RULE)
    wall = Wall(T0 - H)
    await store.add_ticks([Tick(T0 - H, "BTC/USD", 100.0, "x")])
    await run_until_applied(service(store, tmp_path, wall, tick_batch=batch), store)
    ticks = backlog()  # written while the engine was down
    await store.add_ticks(ticks)
    wall.now = ticks[-1].ts + 60  # the engine comes back after the backlog
    await run_until_applied(service(store, tmp_path, wall, tick_batch=batch), store)

    config = Config()
    e = Engine.from_config(load_rules(tmp_path, config.sessions), config.engine, config.sessions)
    want: list[str] = []
    for t in [Tick(T0 - H, "BTC/USD", 100.0), *ticks]:
        e.add(t.ts, t.symbol, t.value)
        want += [a.id for a in e.take_alerts() if a.kind is AlertKind.FIRING]
    got = [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
    assert want and got == want


async def test_input_trimmed_from_the_stream_is_reported_and_is_a_gap(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "r.toml").write_text(RULE)
    wall = Wall(T0 - 2 * H)
    await store.add_ticks([Tick(T0 - H + k, "BTC/USD", 100.0, "x") for k in range(5)])
    svc = service(store, tmp_path, wall)
    await run_until_applied(svc, store)
    assert (await store.engine_status()).get("input_lost") is None
    # the engine is down while 600 ticks arrive, and the stream keeps only the last 200
    await store.add_ticks([Tick(T0 + 10.0 * k, "BTC/USD", 100.0, "x") for k in range(600)])
    await store.redis.xtrim(store.k_ticks, maxlen=200, approximate=False)
    wall.now = T0 + 6000.0
    caplog.set_level(logging.WARNING, logger="bot.runtime.live")
    svc = service(store, tmp_path, wall)
    await run_until_applied(svc, store)
    assert "400 tick(s) after the checkpoint" in caplog.text
    (lost,) = (await store.engine_status())["input_lost"]
    assert lost["lost"] == 400
    assert (lost["from"], lost["to"]) == ("2023-11-14T21:13:24Z", "2023-11-14T23:20:00Z")
    assert svc.engine.gaps() == [(T0 - H + 4, T0 + 4000.0)]
    (line,) = input_lost_lines(await store.engine_status())  # what `stressbot feeds` prints
    assert line.startswith(
        "input lost: 400 tick(s) from 2023-11-14T21:13:24Z to 2023-11-14T23:20:00Z"
    )
    # a restart with nothing trimmed says nothing new
    await run_until_applied(service(store, tmp_path, wall), store)
    assert len((await store.engine_status())["input_lost"]) == 1


def plans() -> st.SearchStrategy[list[tuple[str, int]]]:
    return st.lists(
        st.tuples(st.sampled_from(["live", "down"]), st.integers(1, 4000)), min_size=1, max_size=5
    )


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(m=markets(max_days=0.7), plan=plans(), batch=st.sampled_from([3, 50, 700, 5000]))
def test_the_live_service_on_redis_gives_the_alerts_of_in_order_feeding(
    tmp_path_factory: pytest.TempPathFactory, m: Market, plan: list[tuple[str, int]], batch: int
) -> None:
    rules_dir = property_rules_dir(tmp_path_factory.mktemp("rules"), with_shipped=False)
    asyncio.run(_live_vs_in_order(rules_dir, m, plan, batch))


async def _live_vs_in_order(
    rules_dir: Path, m: Market, plan: list[tuple[str, int]], batch: int
) -> None:
    ticks = [Tick(t, s, v, "gen") for t, s, v in expand(m)]
    engine_cfg = {"gap_after": GAP_AFTER, "evaluate_every": "20s", "tick_batch": batch}
    config = Config.model_validate({"engine": engine_cfg})
    rules = load_rules(rules_dir, config.sessions)
    started = ticks[0].ts - H  # the service's first start, an hour before the first tick
    e = Engine.from_config(rules, config.engine, config.sessions)
    e.evaluate_from = started
    e.advance_to(started)
    want: list[Alert] = []
    for t in ticks:
        e.add(t.ts, t.symbol, t.value)
        want += e.take_alerts()

    redis = Redis.from_url(REDIS_URL)
    store = Store(redis, prefix=f"test:{uuid.uuid4().hex[:12]}")
    wall = Wall(started)
    try:
        # first start before any tick, so every tick counts (no warm-up-only history)
        await run_until_applied(service(store, rules_dir, wall, **engine_cfg), store)
        written = 0
        svc: EngineService | None = None
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        for what, n in [*plan, ("live", len(ticks))]:
            chunk = ticks[written : written + n]
            written += len(chunk)
            if not chunk:
                continue
            if what == "down" or svc is None:
                if task is not None:
                    stop.set()
                    await asyncio.wait_for(task, 30)
                await store.add_ticks(chunk)  # written while the engine is down
                wall.now = max(wall.now, max(t.ts for t in chunk))
                svc, stop = service(store, rules_dir, wall, **engine_cfg), asyncio.Event()
                task = asyncio.create_task(svc.run(stop))
            else:
                await store.add_ticks(chunk)
            last = (await redis.xrevrange(store.k_ticks, count=1))[0][0].decode()
            async with asyncio.timeout(120):
                while svc.position != last:
                    assert task is not None and not task.done()
                    await asyncio.sleep(0.005)
            wall.now = max(wall.now, max(t.ts for t in chunk))  # time catches up with them
        if task is not None:
            stop.set()
            await asyncio.wait_for(task, 30)
        got = [a for _, a in await store.alerts()]
        assert [a.dumps() for a in got] == [Alert.loads(a.dumps()).dumps() for a in want]
    finally:
        await store.clear()
        await redis.aclose()
