"""Score and similarity are the same in live and replay for the same ticks: episode-519.csv
through the live engine service (ticks in Redis) and through a replay of the file; and the
live engine publishes the gauge in its status for /like and /status."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.models import AlertKind, Tick
from bot.engine.episodes import format_like, stress_report
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.live import EngineService
from bot.runtime.stress_history import engine_at, stress_series
from bot.store.redis_store import Store
from bot.telegram.commands import Commands
from connectors.history.file import Rejects, read_history
from tests.conftest import shared_path

pytestmark = pytest.mark.shared


async def test_score_and_similarity_are_identical_in_live_and_replay(store: Store) -> None:
    path = shared_path("data", "history", "episode-519.csv")
    config = Config.model_validate({"engine": {"checkpoint_every": "0s", "max_lateness": "0s"}})
    rules = load_rules(default_rules_dir(), config.sessions)
    rows = [(ts, sym, v) for _, _, ts, sym, v in read_history([path], Rejects())]
    last = rows[-1][0]

    # replay: the file read in memory by the engine replay builds
    replayed = stress_series([path], rules, config)
    replay_engine = engine_at([path], rules, config, last)
    want = stress_report(replay_engine)

    # live: the same ticks through Redis and the engine service
    svc = EngineService(config, store, rules, clock=lambda: rows[0][0] - 3600.0)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        for i in range(0, len(rows), 500):
            await store.add_ticks([Tick(t, s, v, "file") for t, s, v in rows[i : i + 500]])
        async with asyncio.timeout(60):
            while (await store.engine_status()).get("stress", {}).get("ts") != last:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polls Redis: no event to wait on
        got = (await store.engine_status())["stress"]
        live_alerts = [a for _, a in await store.alerts() if a.rule != "feed_health"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    assert got == want  # the published gauge: score, components, closest episodes, moves
    assert got["score"] is not None and got["like"]
    firing = [a for a in replayed.alerts if a.kind is AlertKind.FIRING]
    assert firing, "the replay raised alerts"
    replay_alerts = {a.id: a.values for a in replayed.alerts}
    live = {a.id: a.values for a in live_alerts}
    assert set(live) <= set(replay_alerts)  # the replay's end (finish) may add one more
    assert {a.id for a in replayed.alerts if a.ts < last} <= set(live)
    for aid, values in live.items():
        assert values == replay_alerts[aid], aid
    crash = next(a for a in live_alerts if a.rule == "crypto_crash")
    assert "stress" in crash.values and any(k.startswith("like_") for k in crash.values)

    # /like shows what the engine published
    reply = await Commands(config, store).like()
    assert format_like(want).splitlines()[0] in reply.html
    status = await Commands(config, store).status()
    assert f"Stress {want['score']:.0f}/100" in status.html
    assert f"looks {want['like'][0]['similarity']:.2f} like" in status.html
