"""Telegram's flood limits paced, not hit (issue 11, defect 8).

One limiter serves alerts and command replies: at most one message a second to a chat,
twenty a minute to a group (supergroup, channel) and thirty a second for the whole bot.
"""

from __future__ import annotations

import pytest

from bot.notify import deliver_pending
from bot.notify.config import TelegramConfig
from bot.notify.telegram import TelegramPacing, shared_pacing
from bot.store.redis_store import Store
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import TOKEN_ENV, alert, notify_config, telegram_fixture, tg_ids

GROUP = -1001234567890


tg = telegram_fixture()


async def test_defect8_the_default_limits_are_telegrams() -> None:
    pacing = TelegramPacing(TelegramConfig())
    assert pacing.pacer(GROUP).min_interval == pytest.approx(3.0)  # 20 a minute
    assert pacing.pacer("@somechannel").min_interval == pytest.approx(3.0)
    assert pacing.pacer(4242).min_interval == pytest.approx(1.0)  # 1 a second
    assert pacing.global_.min_interval == pytest.approx(1 / 30)
    assert pacing.pacer(GROUP).parent is pacing.global_
    assert pacing.pacer(GROUP) is pacing.pacer(str(GROUP))  # one pacer per chat


async def test_defect8_alerts_to_a_group_stay_within_twenty_a_minute(
    store: Store, tg: FakeTelegram
) -> None:
    # Telegram's limit with time sped up 60 times: 20 a second to one group, so the pacing
    # configured is 1/20 s (3 s in real life).
    tg.group_limit = (20, 1.0)
    n = 30
    for i in range(n):
        await store.publish_alert(alert(i))
    cfg = notify_config(
        store,
        tg,
        chats=[{"name": "grp", "chat_id": GROUP, "charts": False}],
    )
    tgc = cfg.notify.telegram.model_copy(update={"group_min_interval": 1.0 / 20 * 1.05})
    cfg = cfg.model_copy(update={"notify": cfg.notify.model_copy(update={"telegram": tgc})})
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg) == [f"btc_crash:{i}:firing" for i in range(n)]
    assert tg.flooded == 0 and report.destinations["grp"].rate_limited == 0


async def test_defect8_one_set_of_pacers_per_bot_token() -> None:
    # The notifier service and the command bot both take their pacers from shared_pacing();
    # that alerts and replies then share a group's budget is tests/test_telegram_shared_pacing.py
    cfg = TelegramConfig(token_env=TOKEN_ENV)
    a = shared_pacing("123:abc", cfg)
    assert shared_pacing("123:abc", cfg) is a
    assert shared_pacing("456:def", cfg) is not a
