"""Command replies that are not lost (issue 11, defect 6).

A burst of commands meets Telegram's flood control (429 with ``retry_after``): every reply
still arrives, paced by the limiter alerts use. Nothing a user types makes a reply longer than
Telegram accepts, or makes the bot answer "Something went wrong" for a bad argument. Errors
that do happen reach an error handler, which logs them without the bot token.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager

import pytest

from bot.store.redis_store import Store
from bot.telegram.command_bot import TelegramCommandBot
from tests.fake_telegram import Canned, FakeTelegram, Sent, utf16_len
from tests.notify_fixtures import notify_config, running_command_bot, telegram_fixture, until

ADMIN = 4242
STRANGER = 666


tg = telegram_fixture()


def running_bot(store: Store, tg: FakeTelegram) -> AbstractAsyncContextManager[TelegramCommandBot]:
    return running_command_bot(store, tg, allowed_users=[ADMIN], chats=[])


async def _ask(tg: FakeTelegram, text: str, chat: int = ADMIN, user: int = ADMIN) -> Sent:
    before = len(tg.to_chat(chat))
    tg.push_update_message(text, user_id=user, chat_id=chat)
    await until(lambda: len(tg.to_chat(chat)) > before, 10)
    return tg.to_chat(chat)[before]


def _flood(seconds: int) -> Canned:
    return Canned(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {seconds}",
            "parameters": {"retry_after": seconds},
        },
    )


async def test_defect6_a_burst_of_30_commands_gets_30_replies_through_flood_control(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    tg.script += [_flood(1)] * 3  # the first replies hit Telegram's flood control
    with caplog.at_level(logging.INFO):
        async with running_bot(store, tg):
            for i in range(30):
                tg.push_update_message(f"/help {i}", user_id=ADMIN, chat_id=ADMIN)
            await until(lambda: len(tg.to_chat(ADMIN)) >= 30, 30)
    assert len(tg.to_chat(ADMIN)) == 30
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "No error handlers are registered" not in text
    assert tg.token not in text


async def test_defect6_a_5000_character_argument_never_makes_a_reply_over_4096(
    store: Store, tg: FakeTelegram
) -> None:
    long = "x" * 5000
    async with running_bot(store, tg):
        mute = await _ask(tg, f"/mute {long} 1h")
        chart = await _ask(tg, f"/chart {long}")
        refused = await _ask(tg, f"/{long}", chat=STRANGER, user=STRANGER)
        unknown = await _ask(tg, f"/{'y' * 3000}")
    for r in (mute, chart, refused, unknown):
        assert utf16_len(r.visible) <= 4096
    assert "Unknown rule" in mute.visible and "…" in mute.visible
    assert "Unknown symbol" in chart.visible
    assert "not allowed" in refused.visible
    assert "Unknown command" in unknown.visible


async def test_defect6_history_with_a_superscript_two_answers_the_usage(
    store: Store, tg: FakeTelegram
) -> None:
    async with running_bot(store, tg):
        sup = await _ask(tg, "/history ²")
        arabic = await _ask(tg, "/history ٣")
        big = await _ask(tg, "/history 99999999999999999999")
    for r in (sup, arabic, big):
        assert "N must be a whole number from 1 to 50" in r.visible
        assert "Something went wrong" not in r.visible


async def test_defect6_one_handler_per_command_each_filtered_by_user_and_an_error_handler(
    store: Store, tg: FakeTelegram
) -> None:
    from telegram.ext import CommandHandler, filters

    bot = TelegramCommandBot(notify_config(store, tg, allowed_users=[ADMIN], chats=[]), store)
    app = bot.build_application(tg.token)
    commands = [h for hs in app.handlers.values() for h in hs if isinstance(h, CommandHandler)]
    names = sorted(c for h in commands for c in h.commands)
    assert names == sorted(TelegramCommandBot.COMMANDS)
    assert len(commands) == len(TelegramCommandBot.COMMANDS)  # one handler each
    for h in commands:
        assert "filters.User" in repr(h.filters) or isinstance(h.filters, filters.User)
    assert app.error_handlers


async def test_defect6_an_error_in_a_reply_is_logged_by_the_error_handler_without_the_token(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
    with caplog.at_level(logging.WARNING):
        async with running_bot(store, tg):
            tg.script.append(Canned(403, forbidden))
            tg.push_update_message("/help", user_id=ADMIN, chat_id=ADMIN)
            await asyncio.sleep(0.1)
            r = await _ask(tg, "/help")  # the bot keeps answering
    assert "/mute" in r.visible
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "No error handlers are registered" not in text
    assert "Forbidden" in text and tg.token not in text
