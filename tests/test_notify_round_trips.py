"""What the notifier costs in Redis round trips per alert, counted on a real connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from bot.notify import deliver_pending
from bot.notify.silences import Matcher, Silences
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import alert, notify_config, telegram_fixture

tg = telegram_fixture()


class CountingConnection(Connection):
    """A real Redis connection that counts its writes: one per command, one per pipeline,
    i.e. one per round trip."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted(store: Store) -> AsyncIterator[Store]:
    """`store`'s namespace, through a client whose round trips are counted."""
    client = Redis.from_url(REDIS_URL, connection_class=CountingConnection)
    yield Store(client, prefix=store.prefix)
    await client.aclose()


async def _round_trips(store: Store, tg: FakeTelegram, first: int, n: int) -> int:
    for i in range(first, first + n):
        await store.publish_alert(alert(i))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": -1001, "charts": False}])
    before = CountingConnection.writes
    report = await deliver_pending(cfg, store)
    assert report.destinations["desk"].muted == n
    return CountingConnection.writes - before


async def test_a_silenced_alert_costs_claim_lookup_and_ack_the_silences_read_with_the_marks(
    counted: Store, tg: FakeTelegram
) -> None:
    await Silences(counted).add([Matcher.parse("rule=btc_crash")], ends=time.time() + 3600)
    await _round_trips(counted, tg, 0, 1)  # scripts loaded, old mutes looked for, group made
    five, fifteen = await _round_trips(counted, tg, 1, 5), await _round_trips(counted, tg, 6, 15)
    # Per alert: the claim (a script), the lookup (delivery mark, attempt mark and the
    # silences: one pipeline) and the XACK with the suppressed record (one MULTI/EXEC).
    assert (fifteen - five) / 10 == 3
