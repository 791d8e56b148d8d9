"""Telegram commands while Redis is down: a friendly "storage unavailable", no traceback, and
normal answers again once Redis is back (a redis-server of the test's own, killed and
restarted on the same port)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.store.redis_store import Store
from bot.telegram.command_bot import TelegramCommandBot
from bot.telegram.commands import STORAGE_DOWN
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import notify_config, reply_to, telegram_fixture
from tests.redis_server import OwnRedis

ADMIN = 4242
tg = telegram_fixture()


async def test_commands_say_storage_unavailable_while_redis_is_down_and_recover(
    tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with OwnRedis(tmp_path) as server:
        client = Redis.from_url(server.url, socket_connect_timeout=1.0, socket_timeout=2.0)
        store = Store(client, prefix="down")
        cfg = notify_config(store, tg, allowed_users=[ADMIN])
        bot = TelegramCommandBot(cfg, store)
        stop = asyncio.Event()
        task = asyncio.create_task(bot.run(stop))
        try:
            up = await reply_to(tg, "/silences", user=ADMIN)
            await server.kill()
            down = {
                cmd: await reply_to(tg, cmd, user=ADMIN)
                for cmd in (
                    "/status",
                    "/silences",
                    "/mute all 1h",
                    "/rules",
                    "/sessions",
                    "/like",
                    "/history",
                )
            }
            await server.start()
            back = await reply_to(tg, "/status", user=ADMIN)
            muted = await reply_to(tg, "/silence all 1h maintenance", user=ADMIN)
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
            await client.aclose()
    assert "No silences" in up.visible
    for cmd, reply in down.items():
        assert reply.visible == STORAGE_DOWN, cmd
    assert "<b>Status</b>" in back.text and "Storage unavailable" not in back.visible
    assert "Silence" in muted.visible and "everything" in muted.visible
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "storage unavailable" in logged and "Traceback" not in logged
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("bot."))
