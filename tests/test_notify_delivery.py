"""Delivery from the Redis outbox to the fake Telegram and Discord servers."""

from __future__ import annotations

import logging
import re

import pytest

from bot.core.models import AlertKind
from bot.notify import chart, deliver_pending
from bot.notify.config import DiscordWebhook
from bot.notify.ledger import Ledger
from bot.store.redis_store import Store
from tests.fake_discord import Canned as DCanned
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import Canned as TCanned
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import (
    HOOK_TOKEN,
    alert,
    dc_fixture,
    dc_ids,
    discord_fixture,
    notify_config,
    telegram_fixture,
    tg_fixture,
    tg_ids,
)

tg = telegram_fixture()


dc = discord_fixture(50)


async def test_each_alert_reaches_each_destination_once(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    for i in range(5):
        await store.publish_alert(alert(i))
    report = await deliver_pending(notify_config(store, tg, dc), store)
    expected = [f"btc_crash:{i}:firing" for i in range(5)]
    assert tg_ids(tg) == expected
    assert dc_ids(dc) == expected
    assert report.destinations["desk"].delivered == 5
    assert report.destinations["ops"].delivered == 5
    assert report.complete


async def test_a_second_drain_sends_nothing_again(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    for i in range(3):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, tg, dc)
    await deliver_pending(cfg, store)
    again = await deliver_pending(cfg, store)
    assert len(tg.sent) == 3 and len(dc.posted) == 3
    assert again.total("delivered") == 0


async def test_the_same_alert_id_written_twice_is_delivered_once(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg, dc), store)
    assert tg_ids(tg) == ["btc_crash:1:firing"]
    assert dc_ids(dc) == ["btc_crash:1:firing"]
    assert report.destinations["desk"].already_delivered == 1


async def test_routing_by_severity_pattern_and_resolved(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    await store.publish_alert(alert(1, severity="critical", pattern="crypto_crash"))
    await store.publish_alert(alert(2, severity="info", pattern="crypto_crash"))
    await store.publish_alert(alert(3, severity="warning", pattern="funding_stress", rule="sofr"))
    await store.publish_alert(alert(1, kind=AlertKind.RESOLVED))
    cfg = notify_config(
        store,
        tg,
        dc,
        chats=[
            {
                "name": "crit",
                "chat_id": 111,
                "severities": ["critical"],
                "resolved": True,
                "charts": False,
            },
            {"name": "plain", "chat_id": 333, "charts": False},  # a chat: resolved off by default
            {
                "name": "funding",
                "chat_id": -100222,
                "topic_id": 7,
                "patterns": ["funding_stress"],
                "resolved": False,
                "charts": False,
            },
        ],
        hooks=[{"name": "all-no-resolved", "resolved": False, "charts": False}],
    )
    report = await deliver_pending(cfg, store)
    crit = [re.search(r"id: (\S+)", s.visible).group(1) for s in tg.to_chat(111)]  # type: ignore[union-attr]
    assert crit == ["btc_crash:1:firing", "btc_crash:1:resolved"]
    plain = [re.search(r"id: (\S+)", s.visible).group(1) for s in tg.to_chat(333)]  # type: ignore[union-attr]
    assert plain == ["btc_crash:1:firing", "btc_crash:2:firing", "sofr:3:firing"]
    funding = tg.to_chat(-100222)
    assert [s.thread_id for s in funding] == [7]
    assert "sofr:3:firing" in funding[0].visible
    assert dc_ids(dc) == ["btc_crash:1:firing", "btc_crash:2:firing", "sofr:3:firing"]
    assert report.destinations["funding"].skipped == 3


async def test_telegram_429_retry_after_in_parameters_is_honoured_not_retried_early(
    store: Store, tg: FakeTelegram
) -> None:
    tg.script.append(tg_fixture("429_retry_after_2282_with_parameters.json"))
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg), store, max_wait=1.0)
    assert tg.send_requests == 1  # no second try inside the 2282 s Telegram asked for
    assert tg.sent == []
    assert report.destinations["desk"].deferred == 1  # kept pending, not dropped
    assert report.destinations["desk"].rate_limited == 1


async def test_telegram_429_without_parameters_waits_the_time_in_the_description(
    store: Store, tg: FakeTelegram
) -> None:
    tg.script.append(tg_fixture("429_retry_after_3_no_parameters_2016.json"))
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg), store, max_wait=2.0)
    assert report.destinations["desk"].deferred == 1  # 3 s > 2 s budget: not retried early
    report = await deliver_pending(notify_config(store, tg), store, max_wait=10.0)
    assert tg_ids(tg) == ["btc_crash:1:firing"]
    assert report.destinations["desk"].delivered == 1


async def test_discord_429_user_scope_pauses_that_webhook(store: Store, dc: FakeDiscord) -> None:
    dc.script.append(dc_fixture("429_user_rate_limit.json"))
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, None, dc), store, max_wait=1.0)
    assert dc.requests == 1 and dc.posted == []
    assert report.destinations["ops"].deferred == 1


async def test_discord_global_429_pauses_every_webhook(store: Store, dc: FakeDiscord) -> None:
    dc.script.append(dc_fixture("429_global_rate_limit.json"))
    await store.publish_alert(alert(1))
    cfg = notify_config(
        store, None, dc, hooks=[{"name": "a", "charts": False}, {"name": "b", "charts": False}]
    )
    report = await deliver_pending(cfg, store, max_wait=1.0)
    # one of the two got the global 429; the other must not have gone ahead regardless
    assert dc.requests <= 2
    assert report.total("deferred") >= 1
    assert report.total("rate_limited") == 1


async def test_discord_bucket_headers_pace_requests_so_no_429_is_hit(
    store: Store, dc: FakeDiscord
) -> None:
    dc.bucket_limit, dc.bucket_window = 2, 0.3
    for i in range(6):
        await store.publish_alert(alert(i))
    report = await deliver_pending(notify_config(store, None, dc), store)
    assert len(dc_ids(dc)) == 6
    assert report.destinations["ops"].rate_limited == 0


async def test_5xx_is_retried_with_backoff_then_delivered_once(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    tg.script += [TCanned(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})] * 2
    dc.script += [DCanned(500, {"message": "500: Internal Server Error", "code": 0})] * 2
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg, dc), store)
    assert tg_ids(tg) == ["btc_crash:1:firing"] and dc_ids(dc) == ["btc_crash:1:firing"]
    assert report.destinations["desk"].retries == 2
    assert report.destinations["ops"].retries == 2


async def test_repeated_failure_parks_the_alert_and_the_next_success_redelivers_it(
    store: Store, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    # Was test_repeated_failure_keeps_the_alert_as_a_dead_letter, which asserted that the
    # alert stayed a dead letter for good (issue 11, defect 3): now it is parked after
    # max_attempts, the next alert is not held up, and the success of the next alert brings
    # the parked one with it (saying it may repeat: a 500 may have been posted).
    tg.script += [
        TCanned(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
    ] * 3
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    with caplog.at_level(logging.ERROR):
        report = await deliver_pending(
            notify_config(store, tg, delivery={"max_attempts": 3}), store
        )
    assert report.destinations["desk"].dead == 1  # parked once...
    assert report.destinations["desk"].redelivered == 1  # ...and redelivered
    assert tg_ids(tg) == ["btc_crash:2:firing", "btc_crash:1:firing"]  # 2 not held up
    assert "may repeat" in tg.sent[1].visible
    assert await Ledger(store).parked("desk") == []
    assert any("parked" in r.getMessage() for r in caplog.records)
    assert report.complete


async def test_a_permanent_error_is_dead_lettered_without_retries(
    store: Store, tg: FakeTelegram
) -> None:
    tg.script.append(
        TCanned(
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was kicked from the group chat",
            },
        )
    )
    await store.publish_alert(alert(1))
    report = await deliver_pending(notify_config(store, tg), store)
    assert tg.send_requests == 1
    assert report.destinations["desk"].dead == 1


async def test_rejected_formatting_falls_back_to_plain_text(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    tg.script.append(
        TCanned(
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: can't parse entities: Unsupported start tag",
            },
        )
    )
    dc.script.append(
        DCanned(
            400, {"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": {"0": {}}}}
        )
    )
    await store.publish_alert(alert(1, summary="drop <b>fast</b> & deep"))
    report = await deliver_pending(notify_config(store, tg, dc), store)
    assert tg.sent[0].parse_mode is None
    assert "drop <b>fast</b> & deep" in tg.sent[0].visible
    assert dc.posted[0].embeds == [] and "btc\\_crash" in dc.posted[0].content
    assert report.destinations["desk"].fallbacks == 1
    assert report.destinations["ops"].fallbacks == 1


async def test_each_alert_carries_a_png_chart(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    t0 = 1_700_000_000.0
    await store.add_series(
        {
            "BTC/USD": [(t0 + i * 60, 65000 - i * 150.0) for i in range(61)],
            "US10Y": [(t0 + i * 60, 4.20 + i * 0.001) for i in range(61)],
        },
        keep_after=0,
    )
    await store.publish_alert(alert(60, symbols=["BTC/USD", "US10Y"], ts=t0))
    cfg = notify_config(
        store,
        tg,
        dc,
        chats=[{"name": "desk", "chat_id": 5, "charts": True}],
        hooks=[{"name": "ops", "charts": True}],
    )
    await deliver_pending(cfg, store)
    assert [s.method for s in tg.sent] == ["sendPhoto"]
    png = tg.sent[0].photo or b""
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (chart.WIDTH, chart.HEIGHT) == (800, 600)
    assert list(dc.posted[0].files) == ["chart.png"]
    assert dc.posted[0].embeds[0]["image"]["url"] == "attachment://chart.png"


async def test_the_chart_is_drawn_from_the_points_the_alert_carries(
    store: Store, tg: FakeTelegram
) -> None:
    t0 = 1_700_000_000.0
    a = alert(1, symbols=["BTC/USD"], ts=t0)
    a.chart = {"BTC/USD": [(t0 + i * 60, 65000 - i * 150.0) for i in range(30)]}
    await store.publish_alert(a)  # nothing in the store's series: only the alert has points
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": 5}])
    await deliver_pending(cfg, store)
    assert [s.method for s in tg.sent] == ["sendPhoto"]
    assert (tg.sent[0].photo or b"").startswith(b"\x89PNG")


async def test_a_broken_chart_renderer_never_blocks_the_text(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    def broken(*_: object) -> bytes:
        raise RuntimeError("renderer exploded")

    t0 = 1_700_000_000.0
    await store.add_series({"BTC/USD": [(t0 + i, 1.0 + i) for i in range(10)]}, keep_after=0)
    await store.publish_alert(alert(1, symbols=["BTC/USD"], ts=t0))
    cfg = notify_config(
        store, tg, dc, chats=[{"name": "desk", "chat_id": 5}], hooks=[{"name": "ops"}]
    )
    report = await deliver_pending(cfg, store, renderer=broken)
    assert [s.method for s in tg.sent] == ["sendMessage"]
    assert dc.posted[0].files == {} and "image" not in dc.posted[0].embeds[0]
    assert report.total("delivered") == 2


async def test_a_rejected_chart_is_dropped_and_the_text_sent(
    store: Store, tg: FakeTelegram
) -> None:
    t0 = 1_700_000_000.0
    await store.publish_alert(alert(1, symbols=["BTC/USD"], ts=t0))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": 5}])
    report = await deliver_pending(cfg, store, renderer=lambda *_: b"GIF89a not a png")
    assert [s.method for s in tg.sent] == ["sendMessage"]
    assert report.destinations["desk"].fallbacks == 1


async def test_hostile_alert_text_arrives_verbatim_and_pings_nobody(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    hostile = "<script>alert(1)</script> & </b> @everyone **bold** [x](http://evil)"
    await store.publish_alert(
        alert(1, summary=hostile, rule="r<&>", values={"<i>key": 1.0, "a&b": None})
    )
    await deliver_pending(notify_config(store, tg, dc), store)
    assert tg.sent[0].parse_mode == "HTML"  # accepted as HTML: escaping was right
    assert hostile in tg.sent[0].visible and "<i>key" in tg.sent[0].visible
    posted = dc.posted[0]
    assert posted.payload["allowed_mentions"] == {"parse": []}
    assert "\\*\\*bold\\*\\*" in posted.embeds[0]["description"]


async def test_long_alerts_are_split_within_the_telegram_limit(
    store: Store, tg: FakeTelegram
) -> None:
    summary = "\n".join(f"line {i}: " + "x&<" * 60 for i in range(120))
    await store.publish_alert(alert(1, summary=summary))
    await deliver_pending(notify_config(store, tg), store)
    assert len(tg.sent) > 1
    assert all(s.parse_mode == "HTML" for s in tg.sent)
    joined = "\n".join(s.visible for s in tg.sent)
    assert summary in joined


async def test_the_bot_token_and_webhook_secret_never_reach_the_logs(
    store: Store, tg: FakeTelegram, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    tg.script.append(TCanned(500, {"ok": False, "error_code": 500, "description": "oops"}))
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg, dc)
    with caplog.at_level(logging.DEBUG):
        await deliver_pending(cfg, store)
        logging.getLogger("httpx").warning("HTTP Request: POST %s/bot%s/getMe", tg.base, tg.token)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "retry" in text  # the 500 was logged...
    assert tg.token not in text and HOOK_TOKEN not in text  # ...without secrets


async def test_the_service_delivers_alerts_published_while_it_runs_and_stops_cleanly(
    store: Store, tg: FakeTelegram, dc: FakeDiscord
) -> None:
    import asyncio

    from bot.notify import NotifierService

    stop = asyncio.Event()
    svc = NotifierService(notify_config(store, tg, dc), store)
    task = asyncio.create_task(svc.run(stop))
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    async with asyncio.timeout(10):
        while True:
            if len(tg.sent) >= 2 and len(dc.posted) >= 2:
                break
            await asyncio.sleep(0.02)
    stop.set()
    async with asyncio.timeout(10):
        await task
    assert tg_ids(tg) == dc_ids(dc) == ["btc_crash:1:firing", "btc_crash:2:firing"]
    assert svc.report.destinations["desk"].delivered == 2


async def test_discord_thread_id_is_sent_as_a_query_parameter(
    store: Store, dc: FakeDiscord
) -> None:
    await store.publish_alert(alert(1))
    cfg = notify_config(
        store, None, dc, hooks=[{"name": "t", "thread_id": 987654321, "charts": False}]
    )
    await deliver_pending(cfg, store)
    assert [p.thread_id for p in dc.posted] == ["987654321"]


async def test_a_destination_missing_its_secret_is_reported_and_the_others_still_deliver(
    store: Store, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRESSBOT_TEST_MISSING_HOOK", raising=False)
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg)
    hook = DiscordWebhook(name="ops", url_env="STRESSBOT_TEST_MISSING_HOOK")
    cfg = cfg.model_copy(
        update={
            "notify": cfg.notify.model_copy(
                update={"discord": cfg.notify.discord.model_copy(update={"webhooks": [hook]})}
            )
        }
    )
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg) == ["btc_crash:1:firing"]
    assert "STRESSBOT_TEST_MISSING_HOOK" in report.unavailable["ops"]
    assert not report.complete and "ops: NOT DELIVERED" in report.summary()
