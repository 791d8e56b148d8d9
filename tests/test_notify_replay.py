"""A replay of the March 2020 episode delivered to the fake servers: each alert once, with a chart.

This is what `stressbot replay --deliver` does when [notify] routes somewhere: the replay fills
the outbox, then `deliver_pending` drains it. Without --deliver nothing is sent, and it says so.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.cli.common import rules_for
from bot.core.models import AlertKind
from bot.notify import deliver_pending
from bot.notify.service import accepts
from bot.runtime.replay import ReplayOptions, run_replay
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT, shared_path
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import HOOK_ID, HOOK_TOKEN, TOKEN_ENV, notify_config


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeTelegram, FakeDiscord]]:
    tg = await FakeTelegram().start()
    monkeypatch.setenv(TOKEN_ENV, tg.token)
    dc = await FakeDiscord(bucket_limit=1000).start()
    dc.add_webhook(HOOK_ID, HOOK_TOKEN)
    yield tg, dc
    await tg.stop()
    await dc.stop()


async def test_replayed_alerts_reach_each_matching_destination_once_with_a_chart(
    store: Store, fakes: tuple[FakeTelegram, FakeDiscord]
) -> None:
    tg, dc = fakes
    episode = shared_path("data", "history", "episode-312.csv")
    cfg = notify_config(
        store,
        tg,
        dc,
        chats=[
            {"name": "desk", "chat_id": -1001},
            {
                "name": "funding",
                "chat_id": -1002,
                "topic_id": 7,
                "patterns": ["funding_stress", "liquidity_crisis"],
                "resolved": False,
            },
        ],
        hooks=[{"name": "ops", "severities": ["warning", "critical"]}],
    )
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


async def test_the_312_replay_sends_a_chat_one_message_per_episode_and_no_resolved(
    store: Store, fakes: tuple[FakeTelegram, FakeDiscord]
) -> None:
    """Issue 12's figure: the March 2020 replay with default routing (a Telegram chat and a
    Discord webhook, every severity) sent 18 messages, 9 of them "Resolved", before the rules
    were rewritten and inhibition, keep_firing_for and resolved-off came; now a chat gets one
    message per episode (3), a webhook each plus its resolution (6) (README, "What you get on
    the March 2020 replay")."""
    tg, dc = fakes
    cfg = notify_config(store, tg, dc)  # defaults: resolved off for chats, on for webhooks
    episode = shared_path("data", "history", "episode-312.csv")
    await run_replay(ReplayOptions(files=[episode]), cfg, store, rules_for(cfg, None))
    outbox = [a for _, a in await store.alerts()]
    firing = [a for a in outbox if a.kind is not AlertKind.RESOLVED]
    report = await deliver_pending(cfg, store)
    assert report.complete and report.total("dead") == 0
    chat = [s for s in tg.sent if s.method in ("sendMessage", "sendPhoto")]
    assert len(chat) == len(firing) and not any("RESOLVED" in s.visible for s in chat)
    assert len(dc.posted) == len(outbox) > len(firing)
    # one message per episode: the dash for cash of 12 and 19 March is one alert, not two
    assert [a.rule for a in firing] == ["rates_flight", "liquidity_crisis", "funding_stress"]


async def test_stressbot_replay_delivers_to_the_configured_destinations_only_with_deliver(
    fakes: tuple[FakeTelegram, FakeDiscord], redis: Redis, tmp_path: Path
) -> None:
    tg, dc = fakes
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    hook = f"http://127.0.0.1:{dc.port}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[redis]
prefix = "{prefix}"
[notify.telegram]
token_env = "{TOKEN_ENV}"
api_base = "{tg.base}"
min_interval = 0
global_min_interval = 0
[[notify.telegram.chats]]
name = "desk"
chat_id = -1001
severities = ["critical"]
resolved = true
[notify.discord]
min_interval = 0
[[notify.discord.webhooks]]
name = "ops"
url = "{hook}"
""")
    cmd = [
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
    ]

    async def replay(*extra: str) -> tuple[int | None, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            *extra,
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": REDIS_URL},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode, out, err

    code, out, err = await replay()  # no --deliver: the destinations get nothing
    assert code == 0, err.decode()
    assert "delivery          none: the config has 2 destination(s) (desk, ops)" in out.decode()
    assert "add --deliver" in out.decode()
    assert tg.sent == [] and dc.posted == []
    code, out, err = await replay("--resume", "--deliver")  # the same alerts, now delivered
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    assert code == 0, err.decode()
    report = out.decode()
    outbox = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    critical = [a["id"] for a in outbox if a["severity"] == "critical"]
    # liquidity_crisis and its resolution (how many episodes is the rules' business)
    assert critical and any(i.endswith(":resolved") for i in critical)
    assert f"desk: {len(critical)} delivered" in report
    assert f"ops: {len(outbox)} delivered" in report  # every alert and resolution to "ops"
    sent = [s for s in tg.sent if s.method == "sendPhoto"]
    assert sorted(m.group(1) for s in sent if (m := re.search(r"id: (\S+)", s.visible))) == (
        sorted(critical)
    )
    assert len(dc.posted) == len(outbox)
    assert all(list(p.files) == ["chart.png"] for p in dc.posted)
    assert tg.token not in err.decode() and HOOK_TOKEN not in err.decode()
