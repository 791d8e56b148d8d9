"""Outages outlived (issue 11, defect 3): retries over a horizon of hours, parking after it,
automatic redelivery when the destination recovers, and ``stressbot deadletters``.

Time is not waited out: the tests inject the clock the retry horizon is measured on and move
it forward with every failed request, so an outage of ten minutes takes a second.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.notify import NotifierService, deliver_pending
from bot.notify.ledger import Ledger
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL
from tests.fake_discord import Canned as DCanned
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import Canned as TCanned
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import (
    TOKEN_ENV,
    alert,
    dc_ids,
    discord_fixture,
    notify_config,
    telegram_fixture,
    tg_ids,
    tg_noted,
    until,
)

IDS = [f"btc_crash:{i}:firing" for i in range(1, 4)]


async def _count_is(ledger: Ledger, n: int) -> bool:
    return await ledger.parked_count("desk") >= n


class StepClock:
    """Wall time that the test moves forward (the fake servers advance it per request)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


tg = telegram_fixture()


dc = discord_fixture(100)


async def test_defect3_a_5xx_storm_longer_than_six_attempts_is_ridden_out(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    tg.script += [TCanned(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})]
    tg.script *= 12
    dc.script += [DCanned(503, {"message": "Service Unavailable", "code": 0})] * 12
    for i in range(1, 4):
        await store.publish_alert(alert(i))
    report = await deliver_pending(notify_config(store, tg, dc), store)
    assert tg_ids(tg) == IDS and dc_ids(dc) == IDS  # in order, each once
    assert report.total("parked") == 0 and report.total("delivered") == 6
    assert report.destinations["desk"].retries == 12


async def test_defect3_a_ten_minute_outage_inside_the_horizon_is_delivered_in_order(
    store: Store, tg: FakeTelegram
) -> None:
    clock = StepClock()
    failures = 0

    async def outage(n: int) -> bool:
        nonlocal failures
        if failures < 20:  # 20 failed requests, 30 s apart: ten minutes down
            failures += 1
            clock.advance(30)
            return False  # answered 500 before accepting
        return True

    tg.before_accept = outage
    for i in range(1, 4):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, tg)  # default horizon: 6 h
    report = await deliver_pending(cfg, store, clock=clock)
    assert tg_ids(tg) == IDS
    assert report.total("parked") == 0
    assert await Ledger(store).parked_count("desk") == 0


async def test_defect3_an_outage_past_the_horizon_parks_then_redelivers_on_recovery(
    store: Store, tg: FakeTelegram
) -> None:
    clock = StepClock()
    tg.down = 502

    async def tick(n: int) -> bool:
        clock.advance(60)  # each failed request: a minute of outage
        return True

    tg.before_accept = tick
    for i in range(1, 4):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, tg, delivery={"retry_horizon": "10m", "probe_interval": "0.2s"})
    ledger = Ledger(store)
    stop = asyncio.Event()
    svc = NotifierService(cfg, store, clock=clock)
    task = asyncio.create_task(svc.run(stop))
    try:
        await until(lambda: _count_is(ledger, 3))
        assert tg.sent == []
        parked = await ledger.parked("desk")
        assert [p.alert_id for p in parked] == IDS
        assert all(p.reason == "outage" and "502" in p.error for p in parked)
        tg.down = None  # the destination recovers: a probe finds out, the rest follows
        await until(lambda: len(tg.sent) >= 3)
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    assert tg_ids(tg) == IDS  # redelivered in outbox order, once each
    assert tg_noted(tg) == [True, True, True]  # a 502 may have been posted: said so
    assert await ledger.parked_count("desk") == 0
    assert svc.report.destinations["desk"].parked == 3
    assert svc.report.destinations["desk"].redelivered == 3


async def test_defect3_after_the_horizon_new_alerts_are_parked_at_once_and_follow_the_probe(
    store: Store, tg: FakeTelegram
) -> None:
    clock = StepClock()
    tg.down = 503

    async def tick(n: int) -> bool:
        clock.advance(120)
        return True

    tg.before_accept = tick
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg, delivery={"retry_horizon": "10m"})
    first = await deliver_pending(cfg, store, clock=clock)
    assert first.destinations["desk"].parked == 1
    requests = tg.send_requests
    await store.publish_alert(alert(2))
    second = await deliver_pending(cfg, store, clock=clock)
    assert tg.send_requests <= requests + 2  # one try for the new one, one probe at most
    assert second.destinations["desk"].parked == 1
    tg.down = None
    await store.publish_alert(alert(3))
    third = await deliver_pending(cfg, store, clock=clock)
    # the probe (the oldest parked alert) goes through first and brings the other parked one;
    # the new alert follows: outbox order throughout
    assert tg_ids(tg) == IDS
    assert third.destinations["desk"].redelivered == 2
    assert await Ledger(store).parked_count("desk") == 0


async def test_defect3_a_destination_that_refuses_is_parked_not_retried_and_probed_later(
    store: Store, tg: FakeTelegram
) -> None:
    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}
    tg.script += [TCanned(403, forbidden)] * 2
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    # the first probe waits min(backoff_max, probe_interval): 30 s here, so no probe falls
    # inside the first drain however slow the machine (with the fixture's 0.05 s one did)
    cfg = notify_config(store, tg, delivery={"backoff_max": 30})
    report = await deliver_pending(cfg, store)
    assert tg.send_requests == 2 and report.destinations["desk"].parked == 2
    parked = await Ledger(store).parked("desk")
    assert [p.reason for p in parked] == ["unavailable", "unavailable"]
    assert "403" in parked[0].error and "kicked" in parked[0].error
    await store.publish_alert(alert(3))  # the bot was added back: the probe goes through...
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg) == IDS  # ...and brings the other parked one; then the new alert
    assert report.destinations["desk"].redelivered == 2
    assert tg_noted(tg) == [False, False, False]  # a 403 means not sent: no note


async def test_defect3_deadletters_list_retry_and_drop(
    store: Store, tg: FakeTelegram, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {"ok": False, "error_code": 400, "description": "Bad Request: chat not writable"}
    tg.script += [TCanned(400, bad)] * 3
    for i in range(1, 4):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, tg)
    report = await deliver_pending(cfg, store)
    assert report.destinations["desk"].parked == 3  # rejected: kept for the operator
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[redis]\nprefix = "{store.prefix}"\nurl = "{REDIS_URL}"\n'
        f'[notify.telegram]\ntoken_env = "{TOKEN_ENV}"\napi_base = "{tg.base}"\n'
        "min_interval = 0\nglobal_min_interval = 0\ngroup_min_interval = 0\n"
        '[[notify.telegram.chats]]\nname = "desk"\nchat_id = -1001234567890\ncharts = false\n'
    )

    async def cli(*args: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, ["deadletters", *args, "--config", str(conf)])
        return code, capsys.readouterr().out

    code, out = await cli("list")
    assert code == 0
    for aid in IDS:
        assert aid in out
    assert "desk" in out and "rejected" in out and "chat not writable" in out.lower()
    code, out = await cli("list", "--json")
    rows = json.loads(out)
    assert [r["alert_id"] for r in rows] == IDS and rows[0]["dest"] == "desk"
    code, out = await cli("drop", "desk", IDS[0])
    assert code == 0 and "dropped 1" in out
    code, out = await cli("retry", "desk", "--all")
    assert code == 0 and "2" in out
    await deliver_pending(cfg, store)  # (a running notifier does this by itself)
    assert tg_ids(tg) == IDS[1:]
    code, out = await cli("list")
    assert "no parked alerts" in out
    code, _ = await cli("drop", "desk", "nosuch:id")
    assert code == 1


async def test_a_parked_alert_of_a_muted_rule_waits_for_the_mute_to_end(
    store: Store, tg: FakeTelegram
) -> None:
    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}
    tg.script.append(TCanned(403, forbidden))
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg)
    await deliver_pending(cfg, store)
    ledger = Ledger(store)
    await ledger.mute("btc_crash", 4_000_000_000.0)
    await store.publish_alert(alert(2, rule="sofr"))
    await deliver_pending(cfg, store)  # the destination is back, but btc_crash is muted
    assert tg_ids(tg) == ["sofr:2:firing"]
    assert [p.alert_id for p in await ledger.parked("desk")] == ["btc_crash:1:firing"]
    await ledger.unmute("btc_crash")
    await deliver_pending(cfg, store)
    assert tg_ids(tg) == ["sofr:2:firing", "btc_crash:1:firing"]
    assert await ledger.parked_count("desk") == 0


async def test_an_old_outage_left_by_a_stopped_notifier_does_not_park_a_new_blip(
    store: Store, tg: FakeTelegram
) -> None:
    clock = StepClock()
    two_days_ago = repr(clock() - 2 * 86400)
    await store.redis.hset(
        store.key("notify:outage:desk"),
        mapping={"since": two_days_ago, "last": two_days_ago, "failures": 99},
    )
    tg.script.append(TCanned(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}))
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg), store, clock=clock)
    assert report.destinations["desk"].parked == 0  # a new run of failures, not a 2-day one
    assert tg_ids(tg) == IDS[:1]
    assert await Ledger(store).outage("desk") == {}  # the success ended it


async def test_parked_alerts_beyond_max_parked_drop_the_oldest_to_the_dead_letter_log(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.core.models import Alert
    from bot.runtime.snapshot import read_snapshot

    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}
    tg.script += [TCanned(403, forbidden)] * 4
    ids = [f"btc_crash:{i}:firing" for i in range(1, 5)]
    for i in range(1, 5):
        await store.publish_alert(alert(i))
    # no probe inside the drain (see the test above): each alert is tried once and parked
    cfg = notify_config(store, tg, delivery={"backoff_max": 30, "max_parked": 2})
    report = await deliver_pending(cfg, store)
    ledger = Ledger(store)
    assert tg.send_requests == 4 and report.destinations["desk"].parked == 4
    assert [p.alert_id for p in await ledger.parked("desk")] == ids[2:]
    assert report.destinations["desk"].parked_dropped == 2
    marks = [await ledger.mark("desk", a) for a in ids[:2]]
    assert [m.status if m else None for m in marks] == ["dropped", "dropped"]
    dead = [
        {k.decode(): v.decode() for k, v in f.items()}
        for _, f in await store.redis.xrange(ledger.k_dead)
    ]
    dropped = [d for d in dead if d["event"].startswith("dropped: over max_parked (2)")]
    assert [d["alert_id"] for d in dropped] == ids[:2]
    assert Alert.loads(dropped[0]["alert"]).id == ids[0]  # the alert itself is on the record
    assert "desk: 2 parked alerts at most: dropped the oldest, btc_crash:1:firing" in caplog.text
    snap = await read_snapshot(store, destinations=["desk"])
    assert snap.destinations["desk"].parked_dropped == 2
