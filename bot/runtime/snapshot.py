"""What the store says about the whole deployment, read in one place for `/metrics`, `/readyz`
and `stressbot status`.

A snapshot reads only small records: the feeds' health records, the rule states, the engine
status record with the engine lease and its standbys, the checkpoint's position and clock (not
the engine state it carries), the newest tick's stream id, the outbox length with its consumer
groups (one per destination, named by :meth:`bot.notify.ledger.Ledger.group`, read back with
:func:`bot.notify.ledger.group_destination`), and per destination the parked alerts and the
outage record kept by :class:`bot.notify.ledger.Ledger`, and the silences not yet expired
(:class:`bot.notify.silences.Silences`). A Redis failure gives a snapshot with
``redis_up = False`` and the reason, never an exception.

Feed records carry ``updated``, their reporter's wall time; a record not refreshed for
:func:`stale_report_after` seconds (``max(3 * feeds.status_interval, 30 s)``, as `stressbot
feeds` uses) belongs to a process that is gone, and :func:`feed_state` says ``stale_report``
for it whatever the record last said.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bot.notify.ledger import Ledger, group_destination
from bot.notify.silences import Silence, Silences
from bot.store.redis_store import Store, stream_id

REDIS_TIMEOUT = 2.0  # seconds a read waits for Redis before it reports it down


def stale_report_after(status_interval: float) -> float:
    """Seconds after which a feed's health record is a gone process's, not a live one's."""
    return max(3 * status_interval, 30.0)


def report_expired(rec: dict[str, Any], now: float, status_interval: float) -> bool:
    """Whether the process that wrote this feed record stopped refreshing it (a record without
    ``updated`` counts as expired)."""
    return now - float(rec.get("updated") or 0.0) > stale_report_after(status_interval)


def feed_state(rec: dict[str, Any], now: float, status_interval: float) -> str:
    """The feed's state as of `now`: its reported state, or ``stale_report`` when the process
    that reported it stopped reporting."""
    return "stale_report" if report_expired(rec, now, status_interval) else str(rec.get("state"))


@dataclass
class DestinationFigures:
    """One destination's outbox consumer group and ledger records."""

    pending: int = 0  # read by the destination's group, not acknowledged yet
    unread: int | None = None  # outbox entries the group has not read (None: Redis < 7)
    parked: int = 0  # parked alerts (redelivered when the destination recovers)
    parked_dropped: int = 0  # oldest parked alerts dropped to keep delivery.max_parked
    outage: dict[str, str] = field(default_factory=dict)  # the current run of failures


@dataclass
class Snapshot:
    """What one read of the store found."""

    now: float
    redis_up: bool = False
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)  # Store.engine_status()
    engine_clock: float | None = None
    engine_position: str | None = None
    engine_lease: str | None = None  # the active engine's lease value; None: no leader
    engine_standby: list[str] = field(default_factory=list)
    newest_tick_id: str | None = None
    tick_stream_length: int = 0
    outbox_length: int = 0
    destinations: dict[str, DestinationFigures] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)  # active and pending, not expired
    error: str = ""

    @property
    def engine_backlog(self) -> float | None:
        """Seconds of arrival time between the newest tick and the last one the engine applied
        (stream ids are arrival milliseconds), or None before the engine applied any."""
        pos, newest = self.engine_position, self.newest_tick_id
        if not pos or not newest or "-" not in pos:
            return None
        return max(0.0, (stream_id(newest)[0] - stream_id(pos)[0]) / 1000.0)

    @property
    def engine_lag(self) -> float | None:
        """Wall time minus the engine's event clock at its last checkpoint."""
        return None if self.engine_clock is None else self.now - self.engine_clock


async def read_snapshot(
    store: Store, now: float | None = None, destinations: list[str] | None = None
) -> Snapshot:
    """Read every figure from the store. The destinations are those with an outbox group plus
    `destinations` (the configured ones, which may not have read anything yet)."""
    snap = Snapshot(now=time.time() if now is None else now)
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            await _read(store, snap, destinations or [])
        snap.redis_up = True
    except (RedisError, OSError, TimeoutError) as e:
        snap.error = f"Redis unavailable: {type(e).__name__}"
    return snap


async def _read(store: Store, snap: Snapshot, configured: list[str]) -> None:
    r = store.redis
    snap.feeds = await store.feed_statuses()
    snap.rules = await store.rule_states()
    position, clock = await r.hmget(store.k_checkpoint, ["position", "clock"])
    if position is not None and clock is not None:
        snap.engine_position, snap.engine_clock = _s(position), float(clock)
    snap.engine = await store.engine_status()
    snap.engine_lease = snap.engine.get("lease")
    snap.engine_standby = list(snap.engine.get("standby") or [])
    newest: Any = await r.xrevrange(store.k_ticks, count=1)
    if newest:
        snap.newest_tick_id = _s(newest[0][0])
    snap.tick_stream_length = int(await r.xlen(store.k_ticks))
    snap.outbox_length = int(await r.xlen(store.k_outbox))
    figures: dict[str, DestinationFigures] = {d: DestinationFigures() for d in configured}
    if await r.exists(store.k_outbox):
        groups: Any = await r.xinfo_groups(store.k_outbox)
        for g in groups:
            g = {_s(k): v for k, v in g.items()}
            fig = figures.setdefault(group_destination(_s(g.get("name", ""))), DestinationFigures())
            fig.pending = int(g.get("pending") or 0)
            lag = g.get("lag")
            fig.unread = None if lag is None else int(lag)
    ledger = Ledger(store)
    for dest, fig in figures.items():
        fig.parked = await ledger.parked_count(dest)
        fig.parked_dropped = await ledger.overflowed(dest)
        fig.outage = await ledger.outage(dest)
    snap.destinations = dict(sorted(figures.items()))
    snap.silences = [x for x in await Silences(store).all(snap.now) if x.ends > snap.now]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
