"""The notifier and the Telegram commands against a master that refuses writes for want of
replicas (``NOREPLICAS``: ``min-replicas-to-write 1`` and no replica): an outage to wait out
(:func:`bot.store.connection.is_outage`), logged in one line without a traceback, like the
engine does (tests/test_redis_noreplicas.py). A redis-server of the test's own;
``CONFIG SET min-replicas-to-write`` stands for the replica leaving and coming back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.notify import NotifierService
from bot.store.redis_store import Store
from bot.telegram.command_bot import TelegramCommandBot
from bot.telegram.commands import STORAGE_DOWN
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import (
    alert,
    dc_ids,
    discord_fixture,
    notify_config,
    reply_to,
    telegram_fixture,
    tg_ids,
    until,
)
from tests.redis_server import OwnRedis

tg = telegram_fixture()
dc = discord_fixture(100)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    (tmp_path / "redis").mkdir()
    async with OwnRedis(tmp_path / "redis") as s:  # killed on exit
        yield s


async def _replicas_needed(server: OwnRedis, n: int) -> None:
    """n = 1 with no replica: the master refuses writes; n = 0: it accepts them again."""
    async with Redis(port=server.port) as r:
        await r.config_set("min-replicas-to-write", n)


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "NOREPLICAS: Redis refuses writes" in r.getMessage()]


async def test_the_notifier_waits_out_noreplicas_in_one_line_and_delivers_after_it(
    server: OwnRedis, tg: FakeTelegram, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused from its first write on (consumer group, lease), each destination's delivery
    loop waits with the store backoff (on main it restarted through the generic handler with
    a traceback); once writes are accepted the alert goes out to both, once."""
    caplog.set_level(logging.WARNING, logger="bot.notify")
    async with Redis.from_url(server.url) as client:
        store = Store(client, prefix="nrn")
        await store.publish_alert(alert(1))
        await _replicas_needed(server, 1)
        svc = NotifierService(notify_config(store, tg, dc), store)
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await until(lambda: task.done() or len(_outage_lines(caplog)) >= 2, limit=20)
            assert not task.done()
            assert tg.sent == [] and dc.posted == []
            await _replicas_needed(server, 0)
            await until(lambda: bool(tg_ids(tg)) and bool(dc_ids(dc)), limit=30)
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
    assert tg_ids(tg) == ["btc_crash:1:firing"] and dc_ids(dc) == ["btc_crash:1:firing"]
    notify = [r for r in caplog.records if r.name.startswith("bot.notify")]
    assert not any(r.exc_info for r in notify), [r.getMessage() for r in notify if r.exc_info]
    assert not any("delivery loop failed" in r.getMessage() for r in notify)
    assert all("store unavailable" in r.getMessage() for r in _outage_lines(caplog))


ADMIN = 4242


async def test_a_write_command_refused_with_noreplicas_answers_storage_unavailable(
    server: OwnRedis, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """/silence writes: refused with NOREPLICAS it answers STORAGE_DOWN (on main: "Something
    went wrong" and a traceback), and works again once writes are accepted."""
    caplog.set_level(logging.WARNING)
    async with Redis.from_url(server.url) as client:
        store = Store(client, prefix="nrc")
        bot = TelegramCommandBot(notify_config(store, tg, allowed_users=[ADMIN]), store)
        stop = asyncio.Event()
        task = asyncio.create_task(bot.run(stop))
        try:
            await _replicas_needed(server, 1)
            refused = await reply_to(tg, "/silence all 1h maintenance", user=ADMIN)
            read = await reply_to(tg, "/silences", user=ADMIN)  # reads still work
            await _replicas_needed(server, 0)
            muted = await reply_to(tg, "/silence all 1h maintenance", user=ADMIN)
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
    assert refused.visible == STORAGE_DOWN
    assert "No silences" in read.visible
    assert "Silence" in muted.visible and "everything" in muted.visible
    logged = [r for r in caplog.records if r.name.startswith("bot.")]
    assert any("storage unavailable (NOREPLICAS" in r.getMessage() for r in logged)
    assert not any(r.exc_info for r in logged)
