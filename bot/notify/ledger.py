"""The notifiers' own Redis state: delivery marks, in-flight marks, dead letters, mutes.

Keys (under the store prefix ``{p}``):

``{p}:notify:sent:{dest}``      hash    alert id -> JSON {status: sent|partial|dead, parts, ids, at}
``{p}:notify:inflight:{dest}``  string  "alert id#part" while a request is out (crash evidence)
``{p}:notify:dead``             stream  dead letters: dest, alert id, outbox entry, error, alert
``{p}:notify:mutes``            hash    rule id or ``*`` -> expiry (epoch seconds, UTC)

A delivery mark is written in the same MULTI/EXEC as the XACK of the outbox entry, so an
entry is either pending and unmarked, or acknowledged and marked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from bot.core.models import Alert
from bot.store.redis_store import Store

DEAD_MAXLEN = 10_000
ALL = "*"


@dataclass(slots=True)
class Mark:
    status: str  # sent | partial | dead
    parts: int  # parts accepted so far
    ids: list[str]


@dataclass(slots=True)
class DeadLetter:
    entry: str  # id in the dead-letter stream
    dest: str
    alert_id: str
    error: str
    at: float
    alert: Alert | None


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.k_dead = store.key("notify:dead")
        self.k_mutes = store.key("notify:mutes")

    def group(self, dest: str) -> str:
        return f"notify:{dest}"

    def _k_sent(self, dest: str) -> str:
        return self.store.key(f"notify:sent:{dest}")

    def _k_inflight(self, dest: str) -> str:
        return self.store.key(f"notify:inflight:{dest}")

    # ---- delivery marks ----------------------------------------------------------------------

    async def mark(self, dest: str, alert_id: str) -> Mark | None:
        raw = await self.redis.hget(self._k_sent(dest), alert_id)
        if raw is None:
            return None
        d = orjson.loads(raw)
        return Mark(status=d["status"], parts=int(d.get("parts", 0)), ids=list(d.get("ids", [])))

    async def lookup(
        self, dest: str, alert_id: str, now: float | None = None
    ) -> tuple[Mark | None, str | None, dict[str, float]]:
        """(delivery mark, in-flight mark, active mutes) in one round trip."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self._k_sent(dest), alert_id)
        pipe.get(self._k_inflight(dest))
        pipe.hgetall(self.k_mutes)
        raw_mark, raw_inflight, raw_mutes = await pipe.execute()
        mark = None
        if raw_mark is not None:
            d = orjson.loads(raw_mark)
            mark = Mark(
                status=d["status"], parts=int(d.get("parts", 0)), ids=list(d.get("ids", []))
            )
        mutes = {_s(k): float(v) for k, v in raw_mutes.items() if float(v) > now}
        return mark, (_s(raw_inflight) if raw_inflight is not None else None), mutes

    async def inflight(self, dest: str) -> str | None:
        raw = await self.redis.get(self._k_inflight(dest))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set_inflight(self, dest: str, alert_id: str, part: int) -> None:
        await self.redis.set(self._k_inflight(dest), f"{alert_id}#{part}")

    async def record_part(
        self, dest: str, alert_id: str, parts: int, ids: list[str], *, final: bool, entry_id: str
    ) -> None:
        """Record an accepted part; on the final one also acknowledge the outbox entry."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self._k_sent(dest),
            alert_id,
            orjson.dumps(
                {
                    "status": "sent" if final else "partial",
                    "parts": parts,
                    "ids": ids,
                    "at": time.time(),
                }
            ),
        )
        pipe.delete(self._k_inflight(dest))
        if final:
            pipe.xack(self.store.k_outbox, self.group(dest), entry_id)
        await pipe.execute()

    async def ack_only(self, dest: str, entry_id: str) -> None:
        """Acknowledge an entry that is not for this destination (routing, mute, duplicate)."""
        await self.redis.xack(self.store.k_outbox, self.group(dest), entry_id)

    async def dead_letter(self, dest: str, entry_id: str, alert: Alert, error: str) -> None:
        """Keep the alert in the dead-letter stream, mark it and acknowledge it, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            self.k_dead,
            {
                "dest": dest,
                "alert_id": alert.id,
                "entry": entry_id,
                "error": error[:1000],
                "at": repr(time.time()),
                "alert": alert.dumps(),
            },
            maxlen=DEAD_MAXLEN,
            approximate=True,
        )
        pipe.hset(
            self._k_sent(dest),
            alert.id,
            orjson.dumps(
                {"status": "dead", "parts": 0, "ids": [], "at": time.time(), "error": error[:300]}
            ),
        )
        pipe.delete(self._k_inflight(dest))
        pipe.xack(self.store.k_outbox, self.group(dest), entry_id)
        await pipe.execute()

    async def dead_letters(self, n: int = 10) -> list[DeadLetter]:
        out = []
        rows: Any = await self.redis.xrevrange(self.k_dead, "+", "-", count=n)
        for eid, f in rows:
            d = {_s(k): v for k, v in f.items()}
            try:
                alert: Alert | None = Alert.loads(d["alert"])
            except (KeyError, ValueError):
                alert = None
            out.append(
                DeadLetter(
                    entry=_s(eid),
                    dest=_s(d.get("dest", b"")),
                    alert_id=_s(d.get("alert_id", b"")),
                    error=_s(d.get("error", b"")),
                    at=float(d.get("at", b"0")),
                    alert=alert,
                )
            )
        return out

    async def dead_count(self) -> int:
        return int(await self.redis.xlen(self.k_dead))

    async def pending_count(self, dest: str) -> int:
        try:
            info: Any = await self.redis.xpending(self.store.k_outbox, self.group(dest))
        except Exception:  # the group does not exist yet
            return 0
        return int(info.get("pending", 0)) if isinstance(info, dict) else 0

    # ---- mutes -------------------------------------------------------------------------------

    async def mute(self, target: str, until: float) -> None:
        await self.redis.hset(self.k_mutes, target, repr(until))

    async def unmute(self, target: str | None) -> int:
        """Remove one mute (or every mute when `target` is None); returns how many went."""
        if target is None:
            return int(await self.redis.delete(self.k_mutes))
        return int(await self.redis.hdel(self.k_mutes, target))

    async def mutes(self, now: float | None = None) -> dict[str, float]:
        """Active mutes (target -> expiry); expired ones are removed as they are found."""
        now = time.time() if now is None else now
        raw = await self.redis.hgetall(self.k_mutes)
        active: dict[str, float] = {}
        expired = []
        for k, v in raw.items():
            until = float(v)
            if until > now:
                active[_s(k)] = until
            else:
                expired.append(k)
        if expired:
            await self.redis.hdel(self.k_mutes, *expired)
        return active

    async def muted(self, rule: str, now: float | None = None) -> float | None:
        """The expiry of the mute that silences `rule`, or None."""
        m = await self.mutes(now)
        hits = [m[t] for t in (rule, ALL) if t in m]
        return max(hits) if hits else None


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x
