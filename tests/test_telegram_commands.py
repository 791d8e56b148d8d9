"""The Telegram command bot, run by python-telegram-bot against the fake Bot API server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from bot.notify import deliver_pending
from bot.notify.ledger import ALL, Ledger
from bot.store.redis_store import Checkpoint, Store
from bot.telegram.command_bot import CommandError, Commands, TelegramCommandBot
from tests.fake_telegram import FakeTelegram, Sent
from tests.notify_fixtures import (
    TOKEN_ENV,
    alert,
    notify_config,
    running_command_bot,
    telegram_fixture,
)

ADMIN = 4242
STRANGER = 666
ADMIN_CHAT = 4242  # a private chat has the user's id
ALERT_CHAT = -1001234567890


tg = telegram_fixture()


async def _seed(store: Store) -> None:
    now = 1_700_000_000.0
    await store.commit(
        Checkpoint("p", "f", now, b"{}"),
        rule_states={
            "btc_crash": {
                "state": "firing",
                "severity": "critical",
                "pattern": "crypto_crash",
                "firing_since": now - 600,
                "pending_since": None,
                "last_sent": now,
            },
            "sofr_spike": {
                "state": "inactive",
                "severity": "warning",
                "pattern": "funding_stress",
                "firing_since": None,
                "pending_since": None,
                "last_sent": None,
            },
        },
        latest={"BTC/USD": (now, 58000.0), "US10Y": (now, 4.30)},
    )
    await store.add_series(
        {
            "BTC/USD": [(now - 86400, 64000.0), (now - 3600, 60000.0), (now, 58000.0)],
            "US10Y": [(now - 86400, 4.20), (now - 3600, 4.25), (now, 4.30)],
        },
        keep_after=0,
    )
    await store.set_feed_status(
        "kraken",
        {
            "state": "ok",
            "since": now - 5000,
            "last_tick_ts": time.time() - 3,
            "msgs": 10,
            "errors": 0,
            "detail": "",
        },
    )


def running_bot(store: Store, tg: FakeTelegram) -> AbstractAsyncContextManager[TelegramCommandBot]:
    desk = {"name": "desk", "chat_id": ALERT_CHAT, "charts": False}
    return running_command_bot(store, tg, allowed_users=[ADMIN], chats=[desk])


async def _reply(
    tg: FakeTelegram, chat: int, after: int, pred: Callable[[Sent], bool] = lambda s: True
) -> Sent:
    """The first message the bot sends to `chat` after the first `after` ones."""
    async with asyncio.timeout(10):
        while True:
            got = [s for s in tg.to_chat(chat)[after:] if pred(s)]
            if got:
                return got[0]
            await asyncio.sleep(0.02)


async def _ask(tg: FakeTelegram, text: str, user: int = ADMIN, chat: int = ADMIN_CHAT) -> Sent:
    before = len(tg.to_chat(chat))
    tg.push_update_message(text, user_id=user, chat_id=chat)
    return await _reply(tg, chat, before)


async def test_allowed_user_gets_help(store: Store, tg: FakeTelegram) -> None:
    async with running_bot(store, tg):
        r = await _ask(tg, "/help")
    assert r.parse_mode == "HTML"
    assert "/mute RULE|all DURATION" in r.visible


async def test_a_stranger_is_refused_and_logged_and_nothing_runs(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    await _seed(store)
    with caplog.at_level(logging.WARNING):
        async with running_bot(store, tg) as bot:
            r = await _ask(tg, "/mute all 1h", user=STRANGER, chat=STRANGER)
    assert r.visible == "Sorry, you are not allowed to use this bot."
    assert await Ledger(store).mutes() == {}
    assert bot.refused == 1
    assert any("refused /mute from user 666" in rec.getMessage() for rec in caplog.records)


async def test_an_alert_chat_is_not_an_allow_list(store: Store, tg: FakeTelegram) -> None:
    async with running_bot(store, tg):
        r = await _ask(tg, "/status", user=STRANGER, chat=ALERT_CHAT)
    assert "not allowed" in r.visible


async def test_status_shows_prices_moves_feeds_and_what_is_firing(
    store: Store, tg: FakeTelegram
) -> None:
    await _seed(store)
    async with running_bot(store, tg):
        r = await _ask(tg, "/status")
    v = r.visible
    assert "BTC/USD" in v and "58,000.00" in v
    assert "-3.33%" in v and "-9.38%" in v  # 1h and 24h
    assert "+5.0bp" in v and "+10.0bp" in v  # US10Y in basis points
    assert "kraken: ok" in v
    assert "btc_crash" in v.split("Firing", 1)[1]


async def test_mute_is_persisted_with_its_expiry_and_unmute_removes_it(
    store: Store, tg: FakeTelegram
) -> None:
    await _seed(store)
    async with running_bot(store, tg):
        r = await _ask(tg, "/mute btc_crash 2h")
        mutes = await Ledger(store).mutes()
        r2 = await _ask(tg, "/unmute btc_crash")
    assert "Muted rule btc_crash for 2h" in r.visible
    assert set(mutes) == {"btc_crash"}
    assert 7100 < mutes["btc_crash"] - time.time() <= 7200
    assert "Unmuted rule btc_crash" in r2.visible
    assert await Ledger(store).mutes() == {}


async def test_invalid_arguments_get_clear_replies(store: Store, tg: FakeTelegram) -> None:
    await _seed(store)
    async with running_bot(store, tg):
        bad_dur = await _ask(tg, "/mute btc_crash soon")
        bad_rule = await _ask(tg, "/mute nosuch 1h")
        bad_n = await _ask(tg, "/history 0")
        bad_sym = await _ask(tg, "/chart FOO 1h")
    assert "expected a duration" in bad_dur.visible and "Usage: /mute" in bad_dur.visible
    assert "Unknown rule 'nosuch'" in bad_rule.visible and "btc_crash" in bad_rule.visible
    assert "from 1 to 50" in bad_n.visible
    assert "Unknown symbol 'FOO'" in bad_sym.visible


async def test_hostile_command_arguments_come_back_verbatim(store: Store, tg: FakeTelegram) -> None:
    await _seed(store)
    hostile = "<b>x</b>&amp;<script>"
    async with running_bot(store, tg):
        r = await _ask(tg, f"/mute {hostile} 1h")
    assert hostile in r.visible
    assert await Ledger(store).mutes() == {}


async def test_history_escapes_hostile_alert_text(store: Store, tg: FakeTelegram) -> None:
    await store.publish_alert(alert(1, summary="</b><i>evil & co", rule="r<1>"))
    async with running_bot(store, tg):
        r = await _ask(tg, "/history 5")
    assert r.parse_mode == "HTML"
    assert "</b><i>evil & co" in r.visible and "r<1>" in r.visible


async def test_chart_replies_with_a_png(store: Store, tg: FakeTelegram) -> None:
    await _seed(store)
    async with running_bot(store, tg):
        r = await _ask(tg, "/chart BTC/USD,US10Y 2d")
    assert r.method == "sendPhoto" and (r.photo or b"").startswith(b"\x89PNG")
    assert "BTC/USD, US10Y over 2d" in r.visible


async def test_test_command_sends_an_alert_through_the_full_path(
    store: Store, tg: FakeTelegram
) -> None:
    async with running_bot(store, tg):
        r = await _ask(tg, "/test warning")
    assert "queued for: desk" in r.visible
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT, "charts": False}])
    await deliver_pending(cfg, store)
    delivered = tg.to_chat(ALERT_CHAT)
    assert len(delivered) == 1 and "Test alert requested by @someone" in delivered[0].visible


async def test_the_bot_token_never_appears_in_logs(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with running_bot(store, tg):
            await _ask(tg, "/help")
            # what httpx logs for each request when its logger is at INFO
            logging.getLogger("httpx").warning(
                'HTTP Request: POST %s/bot%s/getUpdates "200 OK"', tg.base, tg.token
            )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/bot***/getUpdates" in text  # the request line was logged...
    assert tg.token not in text  # ...with the token redacted


# ---- mute expiry and effect on delivery (Commands and delivery, no Telegram polling) -------


async def test_an_expired_mute_no_longer_applies_and_is_removed(store: Store) -> None:
    ledger = Ledger(store)
    now = time.time()
    await ledger.mute("btc_crash", now + 3600)
    await ledger.mute(ALL, now - 1)
    assert await ledger.muted("btc_crash", now) == pytest.approx(now + 3600)
    assert await ledger.muted("sofr", now) is None  # the 'all' mute has expired
    assert set(await ledger.mutes(now)) == {"btc_crash"}
    assert await ledger.muted("btc_crash", now + 3601) is None


async def test_a_muted_rule_is_not_delivered_but_others_are(store: Store, tg: FakeTelegram) -> None:
    await Ledger(store).mute("btc_crash", time.time() + 3600)
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2, rule="sofr"))
    report = await deliver_pending(notify_config(store, tg), store)
    assert [("sofr:2" in s.visible) for s in tg.sent] == [True]
    assert report.destinations["desk"].muted == 1


async def test_mute_duration_bounds_are_enforced(store: Store) -> None:
    await _seed(store)
    c = Commands(notify_config(store), store)
    with pytest.raises(CommandError, match="1m to 30d"):
        await c.mute(["btc_crash", "31d"])


async def test_status_shows_dead_letters_and_alerts_waiting(store: Store, tg: FakeTelegram) -> None:
    from tests.fake_telegram import Canned

    tg.script.append(
        Canned(
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
        )
    )
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT, "charts": False}])
    await deliver_pending(cfg, store)
    reply = await Commands(cfg, store).status()
    assert "Undelivered (dead letters)</b>: 1" in reply.html
    assert "desk: btc_crash:1:firing: telegram sendMessage: 403 Forbidden" in reply.html


async def test_status_shows_the_dollar_move_of_each_session(store: Store) -> None:
    from datetime import UTC, datetime

    day = datetime(2024, 3, 12, tzinfo=UTC).timestamp()  # a Tuesday, US on daylight time
    pts = [(day + h * 3600, 100.0 + h * 0.1) for h in range(24)]  # +0.1 index point an hour
    await store.add_series({"DXY": pts}, keep_after=0)
    await store.commit(
        Checkpoint("p", "f", pts[-1][0], b"{}"), latest={"DXY": (pts[-1][0], pts[-1][1])}
    )
    reply = await Commands(notify_config(store), store).status()
    line = reply.html.split("Dollar by session (DXY, last day)</b>\n", 1)[1].split("\n", 1)[0]
    # Tokyo 09:00-16:00 JST is 00:00-07:00 UTC: 100.0 -> 100.7
    assert "asia +0.70%" in line
    assert "europe" in line and "us" in line


async def test_no_command_bot_without_a_token_or_with_commands_off(
    store: Store, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = notify_config(store, tg, allowed_users=[ADMIN])
    assert TelegramCommandBot.from_config(cfg, store) is not None
    off = cfg.model_copy(
        update={
            "notify": cfg.notify.model_copy(
                update={"telegram": cfg.notify.telegram.model_copy(update={"commands": False})}
            )
        }
    )
    assert TelegramCommandBot.from_config(off, store) is None
    monkeypatch.delenv(TOKEN_ENV)
    assert TelegramCommandBot.from_config(cfg, store) is None
