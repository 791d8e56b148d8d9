"""Bounded storage for the notifiers: the outbox trimmed, delivery and attempt marks expired.

**Outbox.** An entry is removed once every configured destination (that has started: see
below) has acknowledged it *and* it is older than ``notify.storage.outbox_retention``. Per
destination, what its consumer group has acknowledged is everything up to the group's
``last-delivered-id`` except what is still in its pending entries list (``XPENDING``'s
``min`` is the oldest of those).

A configured destination whose group does not exist (it never started: its secret is not set,
say, and its alerts "stay in the outbox") holds entries back for the retention only, not for
ever: its group is ignored, so what every started destination acknowledged goes once it is
older than ``outbox_retention``, and a sweep that trims entries past such a destination logs
it by name. When it starts later, its group begins at the oldest entry left (the last
retention's worth). Holding them until it starts would let one unused destination grow the
outbox without bound; a group that exists, however far behind, still holds back what it has
not acknowledged (its worker parks what it cannot deliver, so it moves on).

The cut is ``XTRIM outbox MINID <cut>`` (Redis >= 6.2: "evicts entries with IDs lower than
threshold"; stream ids are the milliseconds Redis assigned, so the retention is measured on
them), exact, never approximate, so nothing newer is removed. Parked alerts do not need their
entry (the parked record holds the alert). ``/history`` shows what the outbox still holds.

**Marks.** Redis 7.0 has no TTL on hash fields (``HEXPIRE`` came in 7.4), so the marks
(``notify:sent:{dest}``, one field per alert) are expired by a sweep: a mark whose ``at`` is
older than ``notify.storage.mark_ttl`` and whose status is final (sent or dropped) is deleted
with the alert's attempt mark. Parked and partial marks are kept (the alert is still to do).
The TTL must outlast the outbox retention (config validation), so an entry still in the
outbox always has its mark. The sweep reads the hash with ``HSCAN`` in pages, so it never
blocks Redis for long.

What else the notifiers keep is bounded where it is written: claims and leases carry a TTL,
the dead-letter and suppressed-alert logs are capped streams, a destination's parked alerts
are at most ``notify.delivery.max_parked`` (:meth:`bot.notify.ledger.Ledger.park`), expired
silences are removed after 5 days (with their counts; so is a silence removed by hand), the
outage record goes with the next success.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from bot.notify.ledger import Ledger

log = logging.getLogger(__name__)
_PAGE = 1000


@dataclass(slots=True)
class Swept:
    outbox_trimmed: int = 0
    marks_expired: int = 0


def _sid(x: Any) -> tuple[int, int]:
    s = x.decode() if isinstance(x, bytes) else str(x)
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


async def outbox_cut(ledger: Ledger, dests: list[str], retention: float, now: float) -> str:
    """The MINID below which every entry is acknowledged by each of `dests` that has a group
    and older than `retention`; "0-0" when nothing may go."""
    return (await _cut(ledger, dests, retention, now))[0]


async def _cut(
    ledger: Ledger, dests: list[str], retention: float, now: float
) -> tuple[str, list[str]]:
    """(the cut, the destinations of `dests` without a consumer group, which it ignored)."""
    store = ledger.store
    cut = (max(0, int((now - retention) * 1000)), 0)
    try:
        groups: Any = await store.redis.xinfo_groups(store.k_outbox)
    except Exception:  # no outbox yet
        return "0-0", []
    by_name = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g for g in groups}
    groupless = []
    for d in dests:
        g = by_name.get(ledger.group(d))
        if g is None:
            groupless.append(d)  # never started: holds back nothing past the retention
            continue
        ms, seq = _sid(g["last-delivered-id"])
        bound = (ms, seq + 1)  # everything up to last-delivered-id was read
        if int(g.get("pending") or 0):
            info: Any = await store.redis.xpending(store.k_outbox, ledger.group(d))
            if info.get("min") is not None:
                bound = min(bound, _sid(info["min"]))
        cut = min(cut, bound)
    return ("0-0" if cut == (0, 0) else f"{cut[0]}-{cut[1]}"), groupless


async def trim_outbox(ledger: Ledger, dests: list[str], retention: float, now: float) -> int:
    """Remove the outbox entries every destination acknowledged that are older than
    `retention` (a destination without a consumer group is not waited for); returns how many
    went."""
    cut, groupless = await _cut(ledger, dests, retention, now)
    if cut == "0-0":
        return 0
    n = int(await ledger.store.redis.xtrim(ledger.store.k_outbox, minid=cut, approximate=False))
    if n and groupless:
        log.warning(
            "storage: %d outbox entr(y/ies) older than the retention trimmed that %s never read: "
            "no consumer group (the destination never started; is its secret set?)",
            n,
            ", ".join(groupless),
        )
    return n


async def expire_marks(ledger: Ledger, dest: str, ttl: float, now: float) -> int:
    """Delete the final delivery marks of `dest` older than `ttl` (and their attempt marks)."""
    redis = ledger.redis
    k_sent, k_attempt = ledger._k("sent", dest), ledger._k("attempt", dest)
    old = now - ttl
    cursor: Any = 0
    n = 0
    while True:
        res: Any = await redis.hscan(k_sent, cursor, count=_PAGE)
        cursor, page = res
        gone = []
        for field, raw in page.items():
            try:
                d = orjson.loads(raw)
                final = d.get("status") in ("sent", "dropped")
                if final and float(d.get("at", now)) < old:
                    gone.append(field)
            except (ValueError, TypeError, AttributeError):
                continue
        if gone:
            pipe = redis.pipeline(transaction=False)
            pipe.hdel(k_sent, *gone)
            pipe.hdel(k_attempt, *gone)
            await pipe.execute()
            n += len(gone)
        if int(cursor) == 0:
            return n


async def sweep(
    ledger: Ledger, dests: list[str], *, retention: float, mark_ttl: float, now: float | None = None
) -> Swept:
    """One pass of both: what the notifier service runs every ``notify.storage.sweep_every``."""
    now = time.time() if now is None else now
    out = Swept(outbox_trimmed=await trim_outbox(ledger, dests, retention, now))
    for d in dests:
        out.marks_expired += await expire_marks(ledger, d, mark_ttl, now)
    if out.outbox_trimmed or out.marks_expired:
        log.info(
            "storage: %d outbox entr(y/ies) trimmed, %d delivery mark(s) expired",
            out.outbox_trimmed,
            out.marks_expired,
        )
    return out
