"""Helpers shared by the notifier and Telegram command tests: configs, alerts, fixture files."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from bot.core.models import Alert, AlertKind
from bot.runtime.config import Config
from bot.store.redis_store import Store
from bot.telegram.command_bot import TelegramCommandBot
from tests.conftest import shared_path
from tests.fake_discord import Canned as DCanned
from tests.fake_discord import FakeDiscord, Posted
from tests.fake_telegram import Canned as TCanned
from tests.fake_telegram import FakeTelegram, Sent

TOKEN_ENV = "STRESSBOT_TEST_TG_TOKEN"
HOOK_ID = "1200000000000000001"
HOOK_TOKEN = "hooktoken-SECRET-abcdefghijklmnop"


def telegram_fixture() -> Any:
    """A ``tg`` fixture: a fake Telegram server whose token is in ``TOKEN_ENV``, where
    :func:`notify_config` points the config. Use as ``tg = telegram_fixture()`` in a test module."""

    @pytest.fixture(name="tg")
    async def tg(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeTelegram]:
        fake = await FakeTelegram().start()
        monkeypatch.setenv(TOKEN_ENV, fake.token)
        yield fake
        await fake.stop()

    return tg


def discord_fixture(bucket_limit: int, *more_hooks: tuple[str, str]) -> Any:
    """A ``dc`` fixture: a fake Discord server with `bucket_limit` requests a second per
    webhook and the webhook :func:`notify_config` routes to (plus `more_hooks`, as (id, token)).
    Use as ``dc = discord_fixture(100)`` in a test module."""

    @pytest.fixture(name="dc")
    async def dc() -> AsyncIterator[FakeDiscord]:
        fake = await FakeDiscord(bucket_limit=bucket_limit, bucket_window=1.0).start()
        for hook_id, hook_token in ((HOOK_ID, HOOK_TOKEN), *more_hooks):
            fake.add_webhook(hook_id, hook_token)
        yield fake
        await fake.stop()

    return dc


def alert(
    i: int,
    *,
    severity: str = "critical",
    pattern: str = "crypto_crash",
    rule: str = "btc_crash",
    kind: AlertKind = AlertKind.FIRING,
    summary: str | None = None,
    values: dict[str, float | None] | None = None,
    symbols: list[str] | None = None,
    ts: float = 1_700_000_000.0,
) -> Alert:
    return Alert(
        id=f"{rule}:{i}:{kind.value}",
        ts=ts + i * 60,
        rule=rule,
        pattern=pattern,
        severity=severity,
        kind=kind,
        summary=summary if summary is not None else f"BTC fell 12.5% in 1h (alert {i})",
        values=values if values is not None else {"BTC/USD": 61234.5, "move_pct": -12.5},
        symbols=symbols if symbols is not None else [],
        window=3600.0,
    )


def notify_config(
    store: Store,
    tg: FakeTelegram | None = None,
    dc: FakeDiscord | None = None,
    *,
    chats: list[dict[str, Any]] | None = None,
    hooks: list[dict[str, Any]] | None = None,
    delivery: dict[str, Any] | None = None,
    allowed_users: list[int] | None = None,
    zone: str = "America/New_York",
) -> Config:
    """A config routing to the fake servers, with fast pacing and backoff for tests."""
    telegram: dict[str, Any] = {
        "token_env": TOKEN_ENV,
        "min_interval": 0,
        "group_min_interval": 0,
        "global_min_interval": 0,
        "allowed_users": allowed_users or [],
        "poll_timeout": 1,
    }
    if tg is not None:
        telegram["api_base"] = tg.base
        telegram["chats"] = (
            chats
            if chats is not None
            else [{"name": "desk", "chat_id": -1001234567890, "charts": False}]
        )
    discord: dict[str, Any] = {"min_interval": 0}
    if dc is not None:
        url = f"http://127.0.0.1:{dc.port}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
        discord["webhooks"] = (
            [{"url": url, **h} for h in (hooks or [])]
            if hooks is not None
            else [{"name": "ops", "url": url, "charts": False}]
        )
    d = {"backoff_base": 0.01, "backoff_max": 0.05, "request_timeout": 5, "drain_timeout": 20}
    d.update(delivery or {})
    return Config.model_validate(
        {
            "redis": {"prefix": store.prefix},
            "display": {"timezone": zone},
            "notify": {"telegram": telegram, "discord": discord, "delivery": d},
        }
    )


def notify_toml(store: Store, tg: FakeTelegram | None, dc: FakeDiscord | None) -> str:
    """The TOML of a config routing to the fake servers (as `notify_config`), for a
    `stressbot notify` subprocess; destinations of a killed process are taken over after 1 s."""
    lines = [
        f'[redis]\nprefix = "{store.prefix}"\n',
        "[notify.delivery]\nbackoff_base = 0.01\nbackoff_max = 0.05\nrequest_timeout = 5\n"
        'lease_ttl = "1s"\n',
        f'[notify.telegram]\ntoken_env = "{TOKEN_ENV}"\nmin_interval = 0\n'
        "global_min_interval = 0\ngroup_min_interval = 0\n",
    ]
    if tg is not None:
        lines.append(
            f'api_base = "{tg.base}"\n[[notify.telegram.chats]]\nname = "desk"\n'
            "chat_id = -1001\ncharts = false\n"
        )
    if dc is not None:
        lines.append(
            "[notify.discord]\nmin_interval = 0\n[[notify.discord.webhooks]]\n"
            f'name = "ops"\nurl = "http://127.0.0.1:{dc.port}/api/webhooks/{HOOK_ID}/'
            f'{HOOK_TOKEN}"\ncharts = false\n'
        )
    return "\n".join(lines)


def tg_fixture(name: str) -> TCanned:
    """A recorded Telegram 429 answer from ../shared/fixtures/telegram."""
    body = json.loads(shared_path("fixtures", "telegram", name).read_text())
    return TCanned(int(body["error_code"]), body)


def dc_fixture(name: str) -> DCanned:
    """A recorded Discord 429 answer (status, headers, body) from ../shared/fixtures/discord."""
    d = json.loads(shared_path("fixtures", "discord", name).read_text())
    return DCanned(int(d["status"]), d["body"], dict(d["headers"]))


#: What every "this may repeat" note says (the restart note and the retry note both do).
MAY_REPEAT = "may repeat an earlier message"
_ID = re.compile(r"id:? (\S+)$", re.M)


def tg_ids(fake: FakeTelegram, chat: int | str | None = None) -> list[str]:
    """Alert ids in the order the fake Telegram accepted them (one per text message)."""
    sent = fake.sent if chat is None else fake.to_chat(chat)
    return [m.group(1) for s in sent if (m := re.search(r"id: (\S+)", s.visible))]


def tg_noted(fake: FakeTelegram) -> list[bool]:
    """For each message the fake Telegram accepted: whether it says it may repeat."""
    return [MAY_REPEAT in s.visible for s in fake.sent if re.search(r"id: (\S+)", s.visible)]


def dc_text(p: Posted) -> str:
    if p.embeds:
        e = p.embeds[0]
        return f"{e.get('description', '')}\n{e['footer']['text']}"
    return p.content


def dc_ids(fake: FakeDiscord) -> list[str]:
    out = []
    for p in fake.posted:
        m = _ID.search(dc_text(p).replace("\\", ""))
        if m:
            out.append(m.group(1))
    return out


def dc_noted(fake: FakeDiscord) -> list[bool]:
    return [MAY_REPEAT in dc_text(p).replace("\\", "") for p in fake.posted]


@dataclass
class Tally:
    """Per destination: what the receiving end saw of the expected alerts."""

    delivered: int = 0  # alerts that arrived (once or more)
    duplicated_with_note: int = 0  # arrived more than once, every extra copy saying so
    duplicated_without_note: int = 0  # arrived more than once, an extra copy not saying so
    parked: int = 0  # not arrived, parked in the ledger (visible, redeliverable)
    lost: int = 0  # not arrived and not parked: must be 0
    noted_single: int = 0  # arrived once, saying it may repeat (the first try was not posted)
    out_of_order: int = 0

    def line(self, name: str) -> str:
        return (
            f"{name}: delivered {self.delivered}, duplicated with note "
            f"{self.duplicated_with_note}, without note {self.duplicated_without_note}, "
            f"parked {self.parked}, lost {self.lost} (arrived once with a note: "
            f"{self.noted_single})"
        )


def tally(
    expected: list[str], got: list[str], noted: list[bool], parked: set[str] | None = None
) -> Tally:
    t = Tally()
    parked = parked or set()
    for aid in expected:
        copies = [n for g, n in zip(got, noted, strict=True) if g == aid]
        if not copies:
            if aid in parked:
                t.parked += 1
            else:
                t.lost += 1
            continue
        t.delivered += 1
        if len(copies) == 1 and copies[0]:
            t.noted_single += 1
        if len(copies) > 1:
            if all(copies[1:]):
                t.duplicated_with_note += 1
            else:
                t.duplicated_without_note += 1
    first = [g for i, g in enumerate(got) if g in expected and g not in got[:i]]
    in_order = sorted(first, key=expected.index)
    t.out_of_order = sum(1 for a, b in zip(first, in_order, strict=True) if a != b)
    return t


async def until(
    pred: Callable[[], bool | Awaitable[bool]], limit: float = 20.0, step: float = 0.02
) -> None:
    """Wait until `pred()` (sync or async) is true; TimeoutError after `limit` seconds."""
    async with asyncio.timeout(limit):
        while True:
            r = pred()
            if not isinstance(r, bool):
                r = await r
            if r:
                return
            await asyncio.sleep(step)


async def reply_to(
    tg: FakeTelegram,
    text: str,
    *,
    user: int,
    chat: int | None = None,
    username: str = "someone",
    within: float = 30.0,
) -> Sent:
    """Send `text` to the command bot as `user` in `chat` (the user's private chat by
    default) and return the first message the bot sends to that chat after it."""
    chat = user if chat is None else chat
    before = len(tg.to_chat(chat))
    tg.push_update_message(text, user_id=user, chat_id=chat, username=username)
    await until(lambda: len(tg.to_chat(chat)) > before, within)
    return tg.to_chat(chat)[before]


@asynccontextmanager
async def running_command_bot(
    store: Store,
    tg: FakeTelegram,
    allowed_users: list[int],
    chats: list[dict[str, Any]],
) -> AsyncIterator[TelegramCommandBot]:
    """The Telegram command bot polling `tg`, stopped (within 15 s) on leaving the block."""
    bot = TelegramCommandBot(
        notify_config(store, tg, allowed_users=allowed_users, chats=chats), store
    )
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        yield bot
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
