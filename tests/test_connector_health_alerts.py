"""Feed health is an alert like any other: a stalled feed raises one, its recovery clears it.

The real engine service reads the health records the supervisor writes; nothing is mocked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.core.models import AlertKind
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.live import EngineService
from bot.store.redis_store import Store
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Script,
    feeds_config,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    wait_until,
)


async def test_stall_raises_a_feed_alert_and_recovery_resolves_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.runtime.live

    monkeypatch.setattr(bot.runtime.live, "FEED_POLL", 0.05)
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def frames(pair: str, cid: int, i: int) -> str | None:
        return kraken_ticker_frame(template, cid, pair, 50_000.0 + i % 7)

    stalling = Script(
        Behaviour(silent_after=5, interval=0.005),
        Behaviour(silent_after=0),
        Behaviour(loop=True, interval=0.005),
    )
    steady = Script(Behaviour(loop=True, interval=0.005))
    # feed alerts without their pending period and group wait (tests/test_feed_alerts.py)
    engine = {"checkpoint_every": "0s", "feed_alert_after": "0s", "feed_alert_group": "0s"}
    config = Config.model_validate({"engine": engine})
    svc = EngineService(config, store, load_rules(default_rules_dir(), config.sessions))
    async with FakeKraken(rec, frames, stalling) as a, FakeKraken(rec, frames, steady) as b:
        sources: dict[str, dict[str, Any]] = {
            "btc": {"kind": "kraken", "url": a.url, "symbols": {"XBT/USD": "BTC/USD"}},
            "fx": {"kind": "kraken", "url": b.url, "symbols": {"EUR/USD": "EUR/USD"}},
        }
        sup = FeedSupervisor(feeds_config(sources), store)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(sup.run(stop)), asyncio.create_task(svc.run(stop))]
        try:

            async def kinds() -> list[tuple[str, AlertKind]]:
                return [(x.rule, x.kind) for _, x in await store.alerts()]

            async def resolved() -> bool:
                return ("feed:btc", AlertKind.RESOLVED) in await kinds()

            await wait_until(resolved, within=10.0, what="the feed alert to resolve")
            fx_ticks = sup.feeds["fx"].health.ticks
            await wait_until(lambda: sup.feeds["fx"].health.ticks > fx_ticks, what="fx ticks")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    alerts = [(x.rule, x.kind) for _, x in await store.alerts()]
    assert alerts.index(("feed:btc", AlertKind.FIRING)) < alerts.index(
        ("feed:btc", AlertKind.RESOLVED)
    )
    assert not any(rule == "feed:fx" for rule, _ in alerts)  # the other feed never faltered
    firing = next(x for _, x in await store.alerts() if x.rule == "feed:btc")
    assert "stale" in firing.summary
