"""A replay of the March 2020 episode delivered to the fake servers: each alert once, with a chart.

This is what `stressbot replay` does when [notify] routes somewhere: the replay fills the
outbox, then `deliver_pending` drains it.
"""

from __future__ import annotations

import collections
import re
from collections.abc import AsyncIterator

import pytest

from bot.notifiers import deliver_pending
from bot.notifiers.service import accepts
from bot.replay import ReplayOptions, run_replay
from bot.replay_commands import rules_for
from bot.store import Store
from tests.conftest import shared_path
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import HOOK_ID, HOOK_TOKEN, TOKEN_ENV, notify_config


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeTelegram,
                                                                        FakeDiscord]]:
    tg = await FakeTelegram().start()
    monkeypatch.setenv(TOKEN_ENV, tg.token)
    dc = await FakeDiscord(bucket_limit=1000).start()
    dc.add_webhook(HOOK_ID, HOOK_TOKEN)
    yield tg, dc
    await tg.stop()
    await dc.stop()


async def test_replayed_alerts_reach_each_matching_destination_once_with_a_chart(
        store: Store, fakes: tuple[FakeTelegram, FakeDiscord]) -> None:
    tg, dc = fakes
    episode = shared_path("data", "history", "episode-312.csv")
    cfg = notify_config(
        store, tg, dc,
        chats=[{"name": "desk", "chat_id": -1001},
               {"name": "funding", "chat_id": -1002, "topic_id": 7,
                "patterns": ["funding_stress", "liquidity_crisis"], "resolved": False}],
        hooks=[{"name": "ops", "severities": ["warning", "critical"]}])
    result = await run_replay(ReplayOptions(files=[episode]), cfg, store, rules_for(cfg, None))
    outbox = [a for _, a in await store.alerts()]
    assert outbox, "the episode raises alerts"
    assert result.alerts

    report = await deliver_pending(cfg, store)

    routes = {r.name: r for r in [*cfg.notify.telegram.chats, *cfg.notify.discord.webhooks]}
    got: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in routes}
    for s in tg.sent:
        name = "desk" if s.chat_id == "-1001" else "funding"
        m = re.search(r"id: (\S+)", s.visible)
        assert m and s.method == "sendPhoto" and (s.photo or b"").startswith(b"\x89PNG")
        got[name][m.group(1)] += 1
    for p in dc.posted:
        assert list(p.files) == ["chart.png"]
        got["ops"][p.embeds[0]["footer"]["text"].rsplit("id ", 1)[1]] += 1
    for name, route in routes.items():
        expected = collections.Counter(a.id for a in outbox if accepts(route, a))
        assert got[name] == expected, name
    assert report.complete and report.total("dead") == 0
