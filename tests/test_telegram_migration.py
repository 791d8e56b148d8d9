"""A group upgraded to a supergroup is followed (issue 11, defect 7).

Telegram answers a send to the old group id with 400 and ``parameters.migrate_to_chat_id``
(python-telegram-bot raises ``ChatMigrated``). The alert goes to the new id at once, and the
new id is kept in Redis so later alerts, and later processes, go there directly.
"""

from __future__ import annotations

import asyncio

from bot.notify import deliver_pending
from bot.notify.ledger import Ledger
from bot.store.redis_store import Store
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import (
    alert,
    notify_config,
    telegram_fixture,
    tg_ids,
    tg_noted,
    until,
)

OLD, NEW = -4001, -1004001


async def _migrated(store: Store) -> bool:
    return bool(await Ledger(store).chat_migrations())


tg = telegram_fixture()


async def test_defect7_a_group_migrated_to_a_supergroup_is_followed_and_persisted(
    store: Store, tg: FakeTelegram
) -> None:
    tg.migrate(OLD, NEW)
    cfg = notify_config(store, tg, chats=[{"name": "grp", "chat_id": OLD, "charts": False}])
    await store.publish_alert(alert(1))
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg, NEW) == ["btc_crash:1:firing"]
    assert tg_noted(tg) == [False]  # the old id refused it: nothing was sent twice
    assert report.destinations["grp"].delivered == 1
    assert report.destinations["grp"].parked == 0
    assert await Ledger(store).chat_migrations() == {str(OLD): NEW}
    requests = tg.send_requests
    await store.publish_alert(alert(2))
    await deliver_pending(cfg, store)  # a new Delivery, as after a restart
    assert tg_ids(tg, NEW) == ["btc_crash:1:firing", "btc_crash:2:firing"]
    assert tg.send_requests == requests + 1  # straight to the supergroup


async def test_defect7_the_command_bot_records_a_migration_it_sees(
    store: Store, tg: FakeTelegram
) -> None:
    from bot.telegram.command_bot import TelegramCommandBot

    cfg = notify_config(store, tg, allowed_users=[4242], chats=[])
    bot = TelegramCommandBot(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        tg.push_service_message(OLD, {"migrate_to_chat_id": NEW})
        await until(lambda: _migrated(store), 10)
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    assert await Ledger(store).chat_migrations() == {str(OLD): NEW}
