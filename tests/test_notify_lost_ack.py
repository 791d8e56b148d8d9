"""Lost acknowledgements (issue 11, defect 4).

Where a send's outcome is unknown (an error answer after the platform posted the message, a
connection dropped before the answer, an answer slower than the client timeout), the resend
says it may repeat an earlier message. Where the message is known not to have been sent (a
429, a 4xx, a refused connection, a wait for pacing), nothing is said.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from bot.notify import NotifierService, deliver_pending
from bot.runtime.config import Config
from bot.store.redis_store import Store
from tests.fake_discord import FakeDiscord, Posted
from tests.fake_telegram import FakeTelegram
from tests.fault_proxy import FaultProxy
from tests.notify_fixtures import (
    HOOK_ID,
    HOOK_TOKEN,
    MAY_REPEAT,
    alert,
    dc_ids,
    dc_noted,
    discord_fixture,
    notify_config,
    telegram_fixture,
    tg_fixture,
    tg_ids,
    tg_noted,
    until,
)

A1, A2 = "btc_crash:1:firing", "btc_crash:2:firing"


tg = telegram_fixture()


dc = discord_fixture(100)


def _via(cfg: Config, proxy: FaultProxy) -> Config:
    """`cfg` with its Telegram API base pointed at the proxy."""
    tg = cfg.notify.telegram.model_copy(update={"api_base": proxy.base})
    return cfg.model_copy(update={"notify": cfg.notify.model_copy(update={"telegram": tg})})


@pytest.mark.parametrize("fault", ["500", "drop", "slow"])
async def test_defect4_an_unconfirmed_telegram_send_is_resent_saying_it_may_repeat(
    fault: str, store: Store, tg: FakeTelegram
) -> None:
    tg.faults.append(fault)
    tg.slow_seconds = 4.0
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    cfg = notify_config(store, tg, delivery={"request_timeout": 2})
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg) == [A1, A1, A2]  # the first copy was posted, its answer lost
    assert tg_noted(tg) == [False, True, False]  # the resend says so, nothing else does
    assert report.destinations["desk"].delivered == 2


@pytest.mark.parametrize("fault", ["500", "drop", "slow"])
async def test_defect4_an_unconfirmed_discord_send_is_resent_saying_it_may_repeat(
    fault: str, store: Store, dc: FakeDiscord
) -> None:
    proxy = await FaultProxy(dc.port).start()
    armed = True

    async def after_accept(p: Posted) -> None:
        nonlocal armed
        if not armed:
            return
        armed = False
        if fault == "500":
            raise web.HTTPInternalServerError()  # posted, then an error answer
        if fault == "drop":
            proxy.drop_next_answers(1)
        if fault == "slow":
            await asyncio.sleep(4.0)

    dc.after_accept = after_accept
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    url = f"{proxy.base}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
    cfg = notify_config(
        store,
        None,
        dc,
        hooks=[{"name": "ops", "charts": False}],
        delivery={"request_timeout": 2},
    )
    hook = cfg.notify.discord.webhooks[0].model_copy(update={"url": url})
    d = cfg.notify.discord.model_copy(update={"webhooks": [hook]})
    cfg = cfg.model_copy(update={"notify": cfg.notify.model_copy(update={"discord": d})})
    try:
        await deliver_pending(cfg, store)
    finally:
        await proxy.stop()
    assert dc_ids(dc) == [A1, A1, A2]
    assert dc_noted(dc) == [False, True, False]


async def test_defect4_a_first_delivery_stopped_during_a_429_wait_carries_no_note(
    store: Store, tg: FakeTelegram
) -> None:
    tg.script.append(tg_fixture("429_retry_after_3_no_parameters_2016.json"))
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg)
    first = await deliver_pending(cfg, store, max_wait=1.0)  # stops inside the 3 s wait
    assert first.destinations["desk"].deferred == 1
    await deliver_pending(cfg, store, max_wait=10.0)
    assert tg_ids(tg) == [A1]
    assert tg_noted(tg) == [False]  # a 429 means not sent: the only copy has no note


async def test_defect4_alerts_stopped_during_the_pacing_wait_carry_no_note_after_restart(
    store: Store, tg: FakeTelegram
) -> None:
    for i in range(1, 4):
        await store.publish_alert(alert(i))
    cfg = notify_config(
        store, tg, chats=[{"name": "desk", "chat_id": 777, "charts": False, "min_interval": 3}]
    )
    stop = asyncio.Event()
    svc = asyncio.create_task(NotifierService(cfg, store).run(stop))
    await until(lambda: len(tg.sent) >= 1)
    await asyncio.sleep(0.3)  # the next alert now waits for the chat's pacing
    stop.set()
    async with asyncio.timeout(15):
        await svc
    assert len(tg.sent) == 1
    await deliver_pending(cfg, store, max_wait=30.0)  # the restart
    assert tg_ids(tg) == [A1, A2, "btc_crash:3:firing"]
    assert tg_noted(tg) == [False, False, False]  # never sent before: no note


async def test_a_refused_connection_is_known_not_sent_and_carries_no_note(
    store: Store, tg: FakeTelegram
) -> None:
    proxy = await FaultProxy(tg.port).start()
    await proxy.down()
    await store.publish_alert(alert(1))
    cfg = _via(notify_config(store, tg), proxy)

    async def recover() -> None:
        await asyncio.sleep(0.5)
        await proxy.up()

    task = asyncio.create_task(recover())
    try:
        report = await deliver_pending(cfg, store)
    finally:
        await task
        await proxy.stop()
    assert tg_ids(tg) == [A1] and tg_noted(tg) == [False]
    assert report.destinations["desk"].retries >= 1


async def test_a_rejected_format_resent_as_plain_text_carries_no_note(
    store: Store, tg: FakeTelegram
) -> None:
    from tests.fake_telegram import Canned

    tg.script.append(
        Canned(
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: can't parse entities: Unsupported start tag",
            },
        )
    )
    await store.publish_alert(alert(1))
    await deliver_pending(notify_config(store, tg), store)
    assert tg_ids(tg) == [A1] and MAY_REPEAT not in tg.sent[0].visible
