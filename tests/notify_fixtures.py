"""Helpers shared by the notifier and Telegram command tests: configs, alerts, fixture files."""

from __future__ import annotations

import json
from typing import Any

from bot.core.models import Alert, AlertKind
from bot.runtime.config import Config
from bot.store.redis_store import Store
from tests.conftest import shared_path
from tests.fake_discord import Canned as DCanned
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import Canned as TCanned
from tests.fake_telegram import FakeTelegram

TOKEN_ENV = "STRESSBOT_TEST_TG_TOKEN"
HOOK_ID = "1200000000000000001"
HOOK_TOKEN = "hooktoken-SECRET-abcdefghijklmnop"


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


def tg_fixture(name: str) -> TCanned:
    """A recorded Telegram 429 answer from ../shared/fixtures/telegram."""
    body = json.loads(shared_path("fixtures", "telegram", name).read_text())
    return TCanned(int(body["error_code"]), body)


def dc_fixture(name: str) -> DCanned:
    """A recorded Discord 429 answer (status, headers, body) from ../shared/fixtures/discord."""
    d = json.loads(shared_path("fixtures", "discord", name).read_text())
    return DCanned(int(d["status"]), d["body"], dict(d["headers"]))
