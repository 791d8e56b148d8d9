"""The notifier's fault suite (issue 11): outages, 429 and 5xx storms, lost acknowledgements.

One notifier service delivers to a fake Telegram and a fake Discord, each behind a loopback
fault proxy, through five phases:

A. a ten-minute outage of both destinations (connections refused), inside the retry horizon;
B. a 429 storm (the recorded Telegram shape, ``retry_after``; Discord's user-scope 429);
C. a 5xx storm (502 / 500 / 503 answers before anything is posted);
D. failures after delivery: the platform posts the message, then answers 500, or the
   connection is dropped before the answer, or the answer is slower than the client timeout;
E. an outage longer than the retry horizon: alerts are parked, then redelivered when the
   destinations come back.

Time is not waited out: the clock the retry horizon is measured on runs 600 times faster than
the wall clock (a second is ten minutes), the horizon is an hour, backoff and probes are
short. Per destination the test reports what arrived: delivered, duplicated with a "may
repeat" note and without one, parked, lost, and the unfenced window (from the moment the
attempt mark is written to the moment the request reaches the platform), and requires no
loss, no duplicate without a note, and nothing left parked.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from aiohttp import web

from bot.notify import NotifierService
from bot.notify.ledger import Ledger
from bot.store.redis_store import Store
from tests.fake_discord import Canned as DCanned
from tests.fake_discord import FakeDiscord, Posted
from tests.fake_telegram import Canned as TCanned
from tests.fake_telegram import FakeTelegram, Sent
from tests.fault_proxy import FaultProxy
from tests.notify_fixtures import (
    HOOK_ID,
    HOOK_TOKEN,
    Tally,
    alert,
    dc_ids,
    dc_noted,
    discord_fixture,
    notify_config,
    tally,
    telegram_fixture,
    tg_ids,
    tg_noted,
    until,
)

SPEED = 600.0  # the horizon's clock: one wall-clock second is ten minutes


class FastClock:
    def __init__(self) -> None:
        self.t0, self.m0 = time.time(), time.monotonic()

    def __call__(self) -> float:
        return self.t0 + (time.monotonic() - self.m0) * SPEED


tg = telegram_fixture()


dc = discord_fixture(1000)


def _tg_429() -> TCanned:
    body = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    return TCanned(429, body)


def _dc_429() -> DCanned:
    body = {"message": "You are being rate limited.", "retry_after": 0.3, "global": False}
    return DCanned(429, body, {"Retry-After": "1", "X-RateLimit-Scope": "user"})


async def test_fault_suite_outages_storms_and_lost_acks(
    store: Store, tg: FakeTelegram, dc: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgp, dcp = await FaultProxy(tg.port).start(), await FaultProxy(dc.port).start()
    cfg = notify_config(
        store,
        tg,
        dc,
        hooks=[{"name": "ops", "charts": False}],
        delivery={
            "retry_horizon": "1h",
            "probe_interval": "0.5s",
            "request_timeout": 2,
            "lease_ttl": "3s",
        },
    )
    tgc = cfg.notify.telegram.model_copy(update={"api_base": tgp.base})
    url = f"{dcp.base}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
    hook = cfg.notify.discord.webhooks[0].model_copy(update={"url": url})
    dcc = cfg.notify.discord.model_copy(update={"webhooks": [hook]})
    cfg = cfg.model_copy(
        update={"notify": cfg.notify.model_copy(update={"telegram": tgc, "discord": dcc})}
    )

    # The unfenced window: attempt mark written -> request at the platform.
    marked: dict[str, float] = {}
    window: list[float] = []
    real_begin = Ledger.begin_attempt

    async def begin(self: Ledger, dest: str, alert_id: str, *a: object, **k: object) -> int:
        r = await real_begin(self, dest, alert_id, *a, **k)  # type: ignore[arg-type]
        marked[dest] = time.monotonic()
        return r

    monkeypatch.setattr(Ledger, "begin_attempt", begin)

    async def tg_seen(n: int) -> bool:
        if "desk" in marked:
            window.append(time.monotonic() - marked["desk"])
        return True

    tg.before_accept = tg_seen
    dc_after: list[str] = []

    async def dc_accepted(p: Posted) -> None:
        if "ops" in marked:
            window.append(time.monotonic() - marked["ops"])
        fault = dc_after.pop(0) if dc_after else None
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "drop":
            dcp.drop_next_answers(1)
        if fault == "slow":
            await asyncio.sleep(3.0)

    dc.after_accept = dc_accepted

    ledger = Ledger(store)
    expected: list[str] = []
    n = 0

    async def publish(k: int) -> list[str]:
        nonlocal n
        ids = []
        for _ in range(k):
            a = alert(n)
            n += 1
            await store.publish_alert(a)
            ids.append(a.id)
        expected.extend(ids)
        return ids

    def arrived(ids: list[str]) -> bool:
        return set(ids) <= set(tg_ids(tg)) and set(ids) <= set(dc_ids(dc))

    stop = asyncio.Event()
    svc = NotifierService(cfg, store, clock=FastClock())
    task = asyncio.create_task(svc.run(stop))
    phases: dict[str, float] = {}
    try:
        # A: ten minutes of outage, inside the one-hour horizon
        t = time.monotonic()
        await tgp.down()
        await dcp.down()
        ids = await publish(5)
        await asyncio.sleep(600 / SPEED)
        await tgp.up()
        await dcp.up()
        await until(lambda: arrived(ids), 60)
        phases["A outage 10 min"] = time.monotonic() - t

        # B: 429 storm (four 1 s waits: 40 minutes at the horizon's speed, still inside it)
        t = time.monotonic()
        tg.script += [_tg_429() for _ in range(4)]
        dc.script += [_dc_429() for _ in range(4)]
        ids = await publish(5)
        await until(lambda: arrived(ids), 60)
        phases["B 429 storm"] = time.monotonic() - t

        # C: 5xx storm (answered before anything is posted)
        t = time.monotonic()
        tg.script += [
            TCanned(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
        ] * 8
        dc.script += [DCanned(500, {"message": "500: Internal Server Error", "code": 0})] * 4
        dc.script += [DCanned(503, {"message": "Service Unavailable", "code": 0})] * 4
        ids = await publish(5)
        await until(lambda: arrived(ids), 60)
        phases["C 5xx storm"] = time.monotonic() - t

        # D: failures after the platform posted the message
        t = time.monotonic()
        tg.slow_seconds = 3.0
        tg.faults += ["500", "", "drop", "", "slow"]  # one fault each for three alerts
        dc_after += ["500", "", "drop", "", "slow"]
        ids = await publish(6)
        await until(lambda: arrived(ids), 60)
        phases["D after-delivery failures"] = time.monotonic() - t

        # E: an outage past the horizon: parked, then redelivered on recovery
        t = time.monotonic()
        await tgp.down()
        await dcp.down()
        ids = await publish(4)

        async def all_parked() -> bool:
            return await ledger.parked_count("desk") >= 4 and await ledger.parked_count("ops") >= 4

        await until(all_parked, 60)
        parked_at_peak = {d: await ledger.parked_count(d) for d in ("desk", "ops")}
        await tgp.up()
        await dcp.up()
        await until(lambda: arrived(ids), 60)
        phases["E outage past the horizon"] = time.monotonic() - t
        await asyncio.sleep(0.5)  # a straggler would arrive now
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
        await tgp.stop()
        await dcp.stop()

    parked_now = {d: {p.alert_id for p in await ledger.parked(d)} for d in ("desk", "ops")}
    figures: dict[str, Tally] = {
        "telegram": tally(expected, tg_ids(tg), tg_noted(tg), parked_now["desk"]),
        "discord": tally(expected, dc_ids(dc), dc_noted(dc), parked_now["ops"]),
    }
    print()
    print(f"fault suite: {len(expected)} alerts to each destination")
    for name, f in figures.items():
        print("  " + f.line(name))
    for dest, r in svc.report.destinations.items():
        print(
            f"  {dest}: parked {r.parked} (peak {parked_at_peak[dest]}), redelivered "
            f"{r.redelivered}, retries {r.retries}, 429s {r.rate_limited}, "
            f"resent after an unknown outcome {r.may_repeat}"
        )
    for phase, secs in phases.items():
        print(f"  {phase}: {secs:.1f}s")
    ws = sorted(window)
    print(
        f"  unfenced window (attempt mark -> request at the platform, {len(ws)} requests): "
        f"p50 {statistics.median(ws) * 1000:.1f} ms, p99 {ws[int(len(ws) * 0.99)] * 1000:.1f} "
        f"ms, max {ws[-1] * 1000:.1f} ms"
    )
    for name, f in figures.items():
        assert f.lost == 0, name
        assert f.duplicated_without_note == 0, name
        assert f.parked == 0, name  # everything parked in E was redelivered
        assert f.delivered == len(expected), name
        assert f.out_of_order == 0, name  # first copies in outbox order, parked ones too
        assert f.duplicated_with_note <= 3, name  # only phase D's three lost answers
    assert svc.report.destinations["desk"].parked >= 4
    assert svc.report.destinations["ops"].parked >= 4
    assert svc.report.destinations["desk"].redelivered >= 4
    assert tg.sent and all(isinstance(s, Sent) for s in tg.sent)
