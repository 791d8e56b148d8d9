"""Feed-health alerts (bot.runtime.feed_alerts): a pending period, so a reconnect of a few
seconds says nothing, and grouping, so several feeds failing together are one message; the
group resolves in one message once all of it is healthy. And through the live engine service
on real Redis: the state survives a restart, and the rules' inhibitions hold them back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.core.models import AlertKind
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from bot.runtime.feed_alerts import FeedAlerts
from bot.runtime.live import EngineService
from bot.store.redis_store import Store

T0 = 1_700_000_000.0
OK: dict[str, Any] = {"state": "ok"}


def down(detail: str = "closed") -> dict[str, Any]:
    return {"state": "down", "detail": detail, "last_tick_ts": T0}


def run(fa: FeedAlerts, plan: list[tuple[float, dict[str, dict[str, Any]]]]) -> list[Any]:
    out = []
    for dt, statuses in plan:
        out += [(a.rule, a.kind.value, a.ts - T0) for a in fa.observe(statuses, T0 + dt)]
    return out


def test_a_reconnect_inside_the_pending_period_says_nothing() -> None:
    fa = FeedAlerts(pending_for=120, group_wait=30)
    plan = [
        (0, {"k": OK}),
        (2, {"k": down()}),
        (4, {"k": {"state": "starting"}}),
        (6, {"k": OK}),
        (300, {"k": OK}),
    ]
    assert run(fa, plan) == []


def test_a_feed_down_past_the_pending_period_is_announced_once_and_resolved_once() -> None:
    fa = FeedAlerts(pending_for=120, group_wait=0)
    plan = [(t, {"k": down()}) for t in range(0, 200, 2)] + [(202, {"k": OK}), (204, {"k": OK})]
    assert run(fa, plan) == [("feed:k", "firing", 120), ("feed:k", "resolved", 202)]
    fa2 = FeedAlerts(pending_for=120, group_wait=0)
    alerts = [a for t, s in plan[:62] for a in fa2.observe(s, T0 + t)]
    assert alerts[0].id == "feed:k@2023-11-14T22:13:20Z"
    assert alerts[0].summary == "Feed k is down; last tick 120 s ago: closed"


def test_feeds_failing_together_are_one_message_and_resolve_in_one() -> None:
    fa = FeedAlerts(pending_for=120, group_wait=30)
    a, b, c = down("a"), down("b"), down("c")
    plan = [
        (0, {"x": a, "y": OK, "z": OK}),
        (10, {"x": a, "y": b, "z": OK}),
        (120, {"x": a, "y": b, "z": OK}),  # x due: waits for company
        (130, {"x": a, "y": b, "z": OK}),  # y due too
        (150, {"x": a, "y": b, "z": OK}),  # the group is sent
        (160, {"x": a, "y": b, "z": c}),  # z later: a message of its own, later
        (200, {"x": OK, "y": b, "z": c}),  # part of the group back: nothing yet
        (210, {"x": OK, "y": OK, "z": c}),
        (320, {"x": OK, "y": OK, "z": c}),
    ]
    got = run(fa, plan)
    assert got == [
        ("feed:x+y", "firing", 150),
        ("feed:x+y", "resolved", 210),
        ("feed:z", "firing", 320),  # due at 280, group wait to 310, next poll
    ]


def test_the_state_goes_through_the_checkpoint_and_old_checkpoints_load() -> None:
    fa = FeedAlerts(pending_for=60, group_wait=0)
    run(fa, [(0, {"k": down()}), (60, {"k": down()})])
    fb = FeedAlerts(pending_for=60, group_wait=0)
    fb.load(fa.dump())
    assert run(fb, [(70, {"k": OK})]) == [("feed:k", "resolved", 70)]
    old = FeedAlerts(pending_for=60, group_wait=0)
    old.load({"k": {"state": "stale", "alerted_at": T0}})  # as written before this module
    assert run(old, [(5, {"k": OK})]) == [("feed:k", "resolved", 5)]


INHIBIT = """
[[rule]]
id = "crisis"
pattern = "liquidity_crisis"
severity = "critical"
when = 'last("XAU/USD") < 50'
for = "0s"
cooldown = "1d"
summary = "crisis"

[[inhibit]]
source = { rule = "crisis" }
target = { pattern = "feed_health" }
"""


async def test_the_engine_service_holds_feed_alerts_back_while_a_crisis_fires(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "r.toml").write_text(INHIBIT)
    config = Config.model_validate({"engine": {"feed_alert_after": "0s", "feed_alert_group": "0s"}})
    rules = load_rules(tmp_path, config.sessions)
    svc = EngineService(config, store, rules, clock=lambda: T0)
    assert await svc.lease.acquire(asyncio.Event())
    svc.engine.evaluate_from = 0.0
    svc.engine.add(T0 - 60, "XAU/USD", 48.0)
    svc.engine.add(T0 - 30, "XAU/USD", 48.0)
    await store.set_feed_status("kraken", down())
    await svc._check_feeds()
    await svc.commit()
    assert [(a.rule, a.kind) for _, a in await store.alerts()] == [("crisis", AlertKind.FIRING)]
    # a restart keeps the held-back alert and the feed's state
    svc2 = EngineService(config, store, rules, clock=lambda: T0 + 10, lease=svc.lease)
    await svc2.restore()
    await store.set_feed_status("kraken", OK)
    await svc2._check_feeds()  # recovered while held back: neither is ever sent
    svc2.engine.add(T0 + 5, "XAU/USD", 52.0)
    svc2.engine.queue(svc2.engine.finish())
    await svc2.commit()
    got = [a for _, a in await store.alerts()]
    assert [(a.rule, a.kind) for a in got] == [
        ("crisis", AlertKind.FIRING),
        ("crisis", AlertKind.RESOLVED),
    ]
    assert "Held back while this fires: feed:kraken (2023-11-14T22:13:20Z)" in got[1].summary
    assert svc2.engine.stats.inhibited == {"feed:kraken": 2}
    await svc.lease.release()
