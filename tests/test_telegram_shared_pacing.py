"""Issue 11: one limiter for alerts and command replies. Alerts (the notifier's workers) and
replies (the command bot, python-telegram-bot with :class:`PacedRateLimiter`) to the same group
share its 20-a-minute budget, because both take their pacers from
:func:`bot.notify.telegram.shared_pacing`.

Time is sped up 60 times: the fake Telegram allows 20 messages a second to a group and answers
429 past that; the group pacing is set to a little over 1/20 s (3 s in real life). With two
limiters each would keep to 20 a second and together they would send up to 40: the fake would
answer 429s (counted in ``flooded``) and record more than 20 messages in a second.
"""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from bot.notify import NotifierService
from bot.runtime.metrics import Local, render
from bot.runtime.snapshot import read_snapshot
from bot.store.redis_store import Store
from bot.telegram.command_bot import TelegramCommandBot
from tests.fake_feeds import wait_until
from tests.fake_telegram import Canned, FakeTelegram
from tests.notify_fixtures import alert, notify_config, telegram_fixture, tg_ids

GROUP = -1001234567890
ADMIN = 4242
ALERTS, COMMANDS = 30, 20

tg = telegram_fixture()


async def test_alerts_and_command_replies_to_one_group_share_its_budget(
    store: Store, tg: FakeTelegram
) -> None:
    tg.group_limit = (20, 1.0)
    cfg = notify_config(
        store,
        tg,
        allowed_users=[ADMIN],
        chats=[{"name": "grp", "chat_id": GROUP, "charts": False}],
    )
    tgc = cfg.notify.telegram.model_copy(update={"group_min_interval": 1.0 / 20 * 1.05})
    cfg = cfg.model_copy(update={"notify": cfg.notify.model_copy(update={"telegram": tgc})})
    stop = asyncio.Event()
    bot, notifier = TelegramCommandBot(cfg, store), NotifierService(cfg, store)
    tasks = [asyncio.create_task(bot.run(stop)), asyncio.create_task(notifier.run(stop))]
    try:
        # the command bot is polling once getUpdates was called
        await wait_until(lambda: "getUpdates" in tg.calls, within=15, what="the command bot")
        for _ in range(COMMANDS):
            tg.push_update_message("/help", user_id=ADMIN, chat_id=GROUP)
        for i in range(ALERTS):
            await store.publish_alert(alert(i))
        await wait_until(
            lambda: len(tg.to_chat(GROUP)) >= ALERTS + COMMANDS, within=30, what="every message"
        )
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    sent = tg.to_chat(GROUP)
    assert tg_ids(tg, GROUP) == [f"btc_crash:{i}:firing" for i in range(ALERTS)]
    replies = [s for s in sent if "/status" in s.visible and "id: " not in s.visible]
    assert len(replies) == COMMANDS
    # the two streams overlapped: replies went out between alerts, not after them
    is_reply = [s in replies for s in sent]
    assert is_reply.index(True) < len(sent) - 1 - is_reply[::-1].index(False)
    assert is_reply.index(False) < len(sent) - 1 - is_reply[::-1].index(True)
    assert tg.flooded == 0, f"{tg.flooded} 429s: alerts and replies were paced apart"
    times = [s.at for s in sent]
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= 20
    m = await metrics(store, Local(notifier=notifier, commands=bot))
    assert m[("stressbot_deliveries_total", (("destination", "grp"),))] == ALERTS
    assert m[("stressbot_delivery_rate_limited_total", (("destination", "grp"),))] == 0
    assert m[("stressbot_command_requests_total", ())] >= COMMANDS
    assert m[("stressbot_command_rate_limited_total", ())] == 0


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def metrics(store: Store, local: Local) -> Samples:
    text = render(await read_snapshot(store), 2.0, local).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def test_a_429_to_a_command_reply_is_retried_and_counted(
    store: Store, tg: FakeTelegram
) -> None:
    flood = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1"}
    tg.script.append(Canned(429, {**flood, "parameters": {"retry_after": 1}}))
    cfg = notify_config(store, tg, allowed_users=[ADMIN], chats=[])
    bot = TelegramCommandBot(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        await wait_until(lambda: "getUpdates" in tg.calls, within=15, what="the command bot")
        tg.push_update_message("/help", user_id=ADMIN, chat_id=ADMIN)
        await wait_until(lambda: bool(tg.to_chat(ADMIN)), within=15, what="the reply")
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    assert bot.limiter is not None
    assert bot.limiter.rate_limited == 1  # the reply's first try; the second went through
    assert len(tg.to_chat(ADMIN)) == 1
    m = await metrics(store, Local(commands=bot))
    assert m[("stressbot_command_rate_limited_total", ())] == 1
