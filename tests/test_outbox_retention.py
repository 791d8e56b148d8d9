"""Bounded storage (issue 12): the outbox trimmed once every destination acknowledged an entry
and it is older than the retention; final delivery marks expired after their TTL."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from bot.core.errors import ConfigError
from bot.notify import deliver_pending
from bot.notify.ledger import Ledger, Mark
from bot.notify.retention import expire_marks, outbox_cut, sweep, trim_outbox
from bot.notify.service import NotifierService
from bot.runtime.config import Config
from bot.store.redis_store import Store
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import alert, discord_fixture, notify_config, telegram_fixture

tg = telegram_fixture()
dc = discord_fixture(1000)
LATER = 10 * 365 * 86400.0  # "now" far enough ahead that every entry is past any retention


async def _ids(store: Store) -> list[str]:
    return [eid for eid, _ in await store.alerts()]


async def test_entries_go_only_once_every_destination_acknowledged_them_and_they_are_old(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    for i in range(4):
        await store.publish_alert(alert(i))
    ledger = Ledger(store)
    dests = ["desk", "ops"]
    for d in dests:  # started (a destination that never started: the test below)
        await store.ensure_group(ledger.group(d))
    assert await trim_outbox(ledger, dests, 3600, time.time() + LATER) == 0  # nobody read yet
    await deliver_pending(notify_config(store, tg), store)  # the Telegram chat only
    assert await trim_outbox(ledger, dests, 3600, time.time() + LATER) == 0  # ops has not
    await deliver_pending(notify_config(store, tg, dc), store)
    assert await trim_outbox(ledger, dests, 3600, time.time()) == 0  # acknowledged, but fresh
    # ops reads one more without acknowledging it (a send in progress): it and all after stay
    await store.publish_alert(alert(4))
    await store.publish_alert(alert(5))
    await store.ensure_group("notify:ops")
    await store.read_group("notify:ops", "someone", count=1, block_ms=None)
    before = await _ids(store)
    assert await trim_outbox(ledger, dests, 3600, time.time() + LATER) == 4
    assert await _ids(store) == before[4:]
    # the rest is delivered as usual, each alert once
    report = await deliver_pending(notify_config(store, tg, dc), store)
    assert report.destinations["desk"].delivered == 2
    assert report.destinations["ops"].delivered == 2  # alert 4 taken over from "someone"
    assert len(tg.sent) == 6 and len(dc.posted) == 6


async def test_the_cut_never_passes_an_entry_some_destination_has_not_acknowledged(
    store: Store,
) -> None:
    """Random reads and acknowledgements by three groups: what is trimmed is exactly the
    longest run of oldest entries that all three acknowledged."""
    ledger = Ledger(store)
    dests = ["a", "b", "c"]
    rnd = random.Random(12)
    for _case in range(25):
        await store.redis.delete(store.k_outbox)
        n = rnd.randint(1, 12)
        ids = [await store.publish_alert(alert(i)) for i in range(n)]
        acked: dict[str, set[str]] = {}
        for d in dests:
            group = ledger.group(d)
            await store.ensure_group(group)
            k = rnd.randint(0, n)
            read = await store.read_group(group, "c1", count=k, block_ms=None) if k else []
            done = {eid for eid, _ in read if rnd.random() < 0.8}
            if done:
                await store.redis.xack(store.k_outbox, group, *done)
            acked[d] = done
        everywhere = [all(i in acked[d] for d in dests) for i in ids]
        prefix = next((k for k, ok in enumerate(everywhere) if not ok), n)
        assert await trim_outbox(ledger, dests, 1.0, time.time() + LATER) == prefix
        assert await _ids(store) == ids[prefix:]
    await store.ensure_group(ledger.group("never-read"))
    assert await trim_outbox(ledger, ["a", "never-read"], 1.0, time.time() + LATER) == 0
    assert await outbox_cut(ledger, ["a"], 1.0, 0.5) == "0-0"  # nothing older than 1 s at 0.5


async def test_a_destination_that_never_started_holds_entries_back_for_the_retention_only(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        await store.publish_alert(alert(i))
    await deliver_pending(notify_config(store, tg), store)  # desk delivers; ops never started
    ledger = Ledger(store)
    dests = ["desk", "ops"]
    groups = [g["name"].decode() for g in await store.redis.xinfo_groups(store.k_outbox)]
    assert groups == [ledger.group("desk")]
    assert await trim_outbox(ledger, dests, 3600, time.time()) == 0  # within the retention
    assert "never read" not in caplog.text
    assert await trim_outbox(ledger, dests, 3600, time.time() + LATER) == 3
    assert await _ids(store) == []
    assert "3 outbox entr(y/ies) older than the retention trimmed that ops never read" in (
        caplog.text
    )


async def test_final_marks_expire_after_their_ttl_parked_ones_stay(
    store: Store, tg: FakeTelegram
) -> None:
    await store.publish_alert(alert(1))
    await deliver_pending(notify_config(store, tg), store)
    ledger = Ledger(store)
    now = time.time()
    await ledger.park(
        "desk",
        alert(2),
        entry_id=None,
        entry="1-0",
        reason="outage",
        error="down",
        tries=3,
        mark=Mark("partial", 0, []),
        now=now - LATER,
    )
    await ledger.end_attempt("desk", "btc_crash:1:firing", 0, unknown=True)  # a stray attempt
    assert await expire_marks(ledger, "desk", 3600, now) == 0  # young
    assert await expire_marks(ledger, "desk", 3600, now + 7200) == 1
    assert await ledger.mark("desk", "btc_crash:1:firing") is None
    assert not await store.redis.hexists(store.key("notify:attempt:desk"), "btc_crash:1:firing")
    parked = await ledger.mark("desk", "btc_crash:2:firing")
    assert parked is not None and parked.status == "parked"
    assert (
        await sweep(ledger, ["desk"], retention=1, mark_ttl=1, now=now + 7200)
    ).marks_expired == 0


def test_marks_must_outlast_the_outbox_retention() -> None:
    with pytest.raises((ConfigError, ValueError), match="mark_ttl must be at least"):
        Config.model_validate(
            {"notify": {"storage": {"outbox_retention": "30d", "mark_ttl": "7d"}}}
        )


async def test_the_notifier_service_sweeps_while_it_runs(store: Store, tg: FakeTelegram) -> None:
    cfg = notify_config(store, tg)
    data = cfg.model_dump()
    data["notify"]["storage"] = {"outbox_retention": 1.0, "mark_ttl": 1.0, "sweep_every": 0.2}
    cfg = Config.model_validate(data)
    for i in range(3):
        await store.publish_alert(alert(i))
    stop = asyncio.Event()
    task = asyncio.create_task(NotifierService(cfg, store).run(stop))
    try:
        async with asyncio.timeout(15):
            while True:
                left = await store.redis.xlen(store.k_outbox)
                left += await store.redis.hlen(store.key("notify:sent:desk"))
                if not left:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert len(tg.sent) == 3  # delivered, then trimmed and expired
