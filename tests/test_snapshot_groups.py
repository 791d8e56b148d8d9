"""The snapshot names each outbox consumer group's destination as the notifier named the group."""

from __future__ import annotations

from bot.notify.ledger import Ledger, group_destination
from bot.runtime.snapshot import read_snapshot
from bot.store.redis_store import Store
from tests.notify_fixtures import alert


async def test_a_destinations_group_shows_in_the_snapshot_under_the_destinations_name(
    store: Store,
) -> None:
    ledger = Ledger(store)
    await store.publish_alert(alert(1))
    await store.publish_alert(alert(2))
    await store.ensure_group(ledger.group("desk.eu-1"))
    assert len(await store.read_group(ledger.group("desk.eu-1"), "c1", count=1)) == 1
    snap = await read_snapshot(store)
    assert list(snap.destinations) == ["desk.eu-1"]
    fig = snap.destinations["desk.eu-1"]
    assert (fig.pending, fig.unread) == (1, 1)
    assert group_destination(ledger.group("x")) == "x" and group_destination("other") == "other"
