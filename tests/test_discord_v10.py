"""Discord webhooks on API v10: versioned paths, rate limits read in v10's units (seconds with
a fraction), every single wait capped (max_wait), the alert kept pending past the cap, and the
default pace at or below Discord's 30 messages a minute per webhook.

The 429s are the ones in Discord's rate-limit docs (../shared/fixtures/discord), answered by
the local fake Discord (tests/fake_discord.py); where a recorded wait is too long for a test
(64.57 s), the same answer is replayed with its numbers scaled down, units unchanged.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from bot.core.errors import ConfigError
from bot.notify import deliver_pending
from bot.notify.config import DiscordConfig, DiscordWebhook
from bot.notify.discord import discord_retry_after, versioned_webhook_url
from bot.store.redis_store import Store
from tests.fake_discord import Canned, FakeDiscord
from tests.notify_fixtures import (
    HOOK_ID,
    HOOK_TOKEN,
    alert,
    dc_fixture,
    discord_fixture,
    notify_config,
)

OTHER_ID = "1200000000000000002"
OTHER_TOKEN = "other-hooktoken-SECRET-0123456789"


dc = discord_fixture(50, (OTHER_ID, OTHER_TOKEN))


def scaled(name: str, factor: float) -> Canned:
    """A recorded 429 with its waits multiplied by `factor` (same fields, same units)."""
    c = dc_fixture(name)
    body: dict[str, Any] = dict(c.body or {})
    body["retry_after"] = round(float(body["retry_after"]) * factor, 3)
    headers = dict(c.headers)
    headers["Retry-After"] = str(max(1, round(float(headers["Retry-After"]) * factor)))
    headers["X-RateLimit-Reset-After"] = f"{float(headers['X-RateLimit-Reset-After']) * factor:.3f}"
    return Canned(c.status, body, headers)


def hooks(dc: FakeDiscord, **first: Any) -> list[dict[str, Any]]:
    base = f"http://127.0.0.1:{dc.port}/api/webhooks"
    return [
        {"name": "ops", "url": f"{base}/{HOOK_ID}/{HOOK_TOKEN}", "charts": False, **first},
        {"name": "desk", "url": f"{base}/{OTHER_ID}/{OTHER_TOKEN}", "charts": False},
    ]


@pytest.mark.parametrize(
    ("pasted", "posted"),
    [
        (
            "https://discord.com/api/webhooks/123/AbC-dEf_9",
            "https://discord.com/api/v10/webhooks/123/AbC-dEf_9?wait=true",
        ),
        (
            "https://discordapp.com/api/v6/webhooks/123/AbC/",
            "https://discordapp.com/api/v10/webhooks/123/AbC?wait=true",
        ),
        (
            "https://ptb.discord.com/api/webhooks/123/AbC?thread_id=777&wait=false",
            "https://ptb.discord.com/api/v10/webhooks/123/AbC?thread_id=777&wait=true",
        ),
        (
            "https://discord.com/api/v10/webhooks/123/AbC?wait=true",
            "https://discord.com/api/v10/webhooks/123/AbC?wait=true",
        ),
    ],
)
def test_pasted_webhook_urls_are_posted_to_v10_keeping_the_query(pasted: str, posted: str) -> None:
    url, token = versioned_webhook_url(pasted)
    assert (url, token) == (posted, posted.split("/")[-1].split("?")[0])


def test_thread_id_of_the_config_is_set_and_a_bad_url_never_shows_its_token() -> None:
    url, _ = versioned_webhook_url("https://discord.com/api/webhooks/1/T0KEN", thread_id=42)
    assert url == "https://discord.com/api/v10/webhooks/1/T0KEN?wait=true&thread_id=42"
    with pytest.raises(ConfigError) as e:
        versioned_webhook_url("https://discord.com/channels/1/T0KEN-secret")
    assert "T0KEN-secret" not in str(e.value) and "api/webhooks/ID/TOKEN" in str(e.value)


def test_v10_values_are_seconds_body_first() -> None:
    for name, want in (
        ("429_user_rate_limit.json", 64.57),
        ("429_shared_resource_rate_limit.json", 1336.57),
    ):
        c = dc_fixture(name)
        assert discord_retry_after(dict(c.body or {}), c.headers) == want  # not 65, not ms
    # no body value: X-RateLimit-Reset-After (seconds with a fraction), then Retry-After
    assert discord_retry_after({}, {"X-RateLimit-Reset-After": "1.5", "Retry-After": "2"}) == 1.5
    assert discord_retry_after({}, {"Retry-After": "2"}) == 2.0


def test_default_pace_is_at_most_30_messages_a_minute_per_webhook() -> None:
    assert 60.0 / DiscordConfig().min_interval <= 30
    assert DiscordWebhook(name="x", url="http://127.0.0.1:1/api/webhooks/1/t").max_wait == 300


async def test_a_429_with_v10_values_delays_that_webhook_by_what_it_says_never_more(
    store: Store, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dc.script.append(scaled("429_user_rate_limit.json", 0.02))  # retry_after 1.291 s
    await store.publish_alert(alert(1))
    cfg = notify_config(store, None, dc, hooks=hooks(dc))
    report = await deliver_pending(cfg, store, max_wait=10.0)
    assert report.total("delivered") == 2 and report.total("rate_limited") == 1
    assert {v for _, _, v in dc.log} == {10}  # every request went to /api/v10/
    limited = next(h for h in (HOOK_ID, OTHER_ID) if len(dc.times(h)) == 2)
    first, retry = dc.times(limited)
    # what the body said, 1.291 s: not the rounded Retry-After (1 s), not 1291 s (ms misread)
    assert 1.291 <= retry - first < 1.291 + 1.0
    other = OTHER_ID if limited == HOOK_ID else HOOK_ID
    (sent,) = dc.times(other)
    assert sent - first < 1.0  # a user-scope 429 pauses that webhook only
    assert HOOK_TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text


async def test_a_wait_longer_than_the_cap_is_cut_to_it_and_the_alert_is_kept(
    store: Store, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    dc.script.append(dc_fixture("429_shared_resource_rate_limit.json"))  # 1336.57 s, as recorded
    await store.publish_alert(alert(1))
    cfg = notify_config(store, None, dc, hooks=hooks(dc, max_wait="1s")[:1])
    report = await deliver_pending(cfg, store, max_wait=10.0)
    assert report.destinations["ops"].delivered == 1
    first, retry = dc.times(HOOK_ID)
    assert 1.0 <= retry - first < 2.5  # capped at max_wait (not 1336.57 s), then tried again
    assert "asks to wait 1337s, longer than max_wait 1s" in caplog.text
    assert HOOK_TOKEN not in caplog.text


async def test_past_the_cap_within_a_drain_the_alert_stays_pending_never_dropped(
    store: Store, dc: FakeDiscord
) -> None:
    dc.script.append(dc_fixture("429_shared_resource_rate_limit.json"))
    await store.publish_alert(alert(1))
    cfg = notify_config(store, None, dc, hooks=hooks(dc, max_wait="3s")[:1])
    report = await deliver_pending(cfg, store, max_wait=1.0)  # the drain ends before the cap
    r = report.destinations["ops"]
    assert (r.deferred, r.dead, r.delivered) == (1, 0, 0)
    report = await deliver_pending(cfg, store, max_wait=10.0)  # a later run delivers it
    assert report.destinations["ops"].delivered == 1 and len(dc.posted) == 1


async def test_an_empty_bucket_pauses_by_reset_after_in_seconds(
    store: Store, dc: FakeDiscord
) -> None:
    dc.bucket_limit, dc.bucket_window = 1, 0.6
    for i in range(3):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, None, dc, hooks=hooks(dc)[:1])
    report = await deliver_pending(cfg, store, max_wait=10.0)
    assert report.destinations["ops"].delivered == 3
    assert report.destinations["ops"].rate_limited == 0  # paced by the headers, no 429
    t = dc.times(HOOK_ID)
    assert all(0.5 <= b - a < 1.2 for a, b in itertools.pairwise(t))
