"""The notifiers' own Redis state: delivery marks, attempts, claims, leases, parked alerts.

Keys (under the store prefix ``{p}``; ``{dest}`` is a destination name):

``{p}:notify:sent:{dest}``       hash    alert id -> JSON mark {status, parts, ids, noted, at};
                                         status is sent | partial | parked | dropped
``{p}:notify:attempt:{dest}``    hash    alert id -> "part|sending" while a request is out,
                                         "part|unknown" after one whose outcome is unknown
``{p}:notify:claim:{dest}:{id}`` string  owner (consumer name) working on that alert, with a TTL
``{p}:notify:lease:{dest}``      string  owner delivering to the destination, with a TTL
``{p}:notify:parked:{dest}``     hash    alert id -> JSON {alert, entry, reason, error, at, tries}
``{p}:notify:retry:{dest}``      hash    alert id -> when an operator asked for a redelivery
``{p}:notify:outage:{dest}``     hash    since (first failure of the current run of failures),
                                         failures, error; deleted by the next success
``{p}:notify:dead``              stream  log of parkings and drops (capped: the parked hashes
                                         are the record, this is the history)
``{p}:notify:overflow``          hash    dest -> parked alerts dropped to keep
                                         ``notify.delivery.max_parked``
``{p}:notify:silences`` ...     silences (mutes among them): :mod:`bot.notify.silences`
``{p}:notify:telegram:migrated`` hash    old Telegram chat id -> the supergroup it became
``{p}:notify:upgraded``          string  set once the state of older versions was carried over

A delivery mark is written in the same MULTI/EXEC as the XACK of the outbox entry (or, for a
parked alert, as its removal from the parked hash), so an alert is either still to do or done
and marked. Parking acknowledges the outbox entry in the same transaction that records the
alert in the parked hash: a parked alert is never only in one place or in neither. The parked
hash of a destination holds at most ``max_parked`` alerts: parking one more drops the oldest
(outbox order), each marked "dropped", removed from the parked hash and written, with its alert,
to the dead-letter log, in one transaction (:meth:`Ledger.park`).

Exactly once across processes: a process delivers to a destination only while it holds the
destination's lease (``SET NX PX`` with its consumer name, renewed well inside the TTL), and
before each request it checks, in the same script that writes the attempt mark, that it still
holds the claim of the alert (``SET NX PX`` per alert and destination). A process paused past
its TTL therefore cannot start a request after another one took over; a request it had
already started is recorded by its attempt mark, so the new owner's resend says it may repeat.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson

from bot.core.models import Alert
from bot.notify import ledger_scripts as scripts
from bot.notify.silences import ALL, Silence, Silences, muted_until
from bot.store.redis_store import Store

__all__ = ["ALL", "GROUP_PREFIX", "Ledger", "group_destination", "muted_until"]

DEAD_MAXLEN = 10_000
#: A destination's outbox consumer group is ``notify:{dest}`` (:meth:`Ledger.group`); the
#: one definition, also read by :func:`group_destination` (the snapshot, retention).
GROUP_PREFIX = "notify:"
#: Why an alert is parked. The first two are redelivered when the destination recovers;
#: "rejected" (the platform refused that message) waits for ``stressbot deadletters retry``.
OUTAGE, UNAVAILABLE, REJECTED = "outage", "unavailable", "rejected"
AUTO_REDELIVER = frozenset({OUTAGE, UNAVAILABLE})
SENDING, UNKNOWN = "sending", "unknown"


def consumer_name() -> str:
    """A consumer name of its own for each process (and each delivery run within it):
    ``host:pid:random``."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class Mark:
    status: str  # sent | partial | parked | dropped
    parts: int  # parts accepted so far
    ids: list[str]
    noted: bool = False  # the parts were rendered with a "may repeat" note


@dataclass(slots=True)
class Attempt:
    part: int
    state: str  # SENDING (a request is out) | UNKNOWN (its outcome is unknown)


@dataclass(slots=True)
class Parked:
    dest: str
    alert_id: str
    alert: Alert | None
    entry: str  # the outbox entry it came from
    reason: str  # OUTAGE | UNAVAILABLE | REJECTED
    error: str
    at: float  # when it was (last) parked
    tries: int  # delivery attempts made so far
    retry: bool = False  # an operator asked for a redelivery


#: The DeadLetter name of the status command (a parked alert is a dead letter that can return).
DeadLetter = Parked


def _entry_key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (2**62, 0)


def _mark(raw: bytes | str | None) -> Mark | None:
    if raw is None:
        return None
    d = orjson.loads(raw)
    status = "parked" if d["status"] == "dead" else str(d["status"])  # "dead": older versions
    return Mark(status, int(d.get("parts", 0)), list(d.get("ids", [])), bool(d.get("noted")))


def _attempt(raw: bytes | str | None) -> Attempt | None:
    if raw is None:
        return None
    part, _, state = _s(raw).partition("|")
    try:
        return Attempt(int(part), state or SENDING)
    except ValueError:
        return None


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.k_dead = store.key("notify:dead")
        self.k_overflow = store.key("notify:overflow")
        self.silences = Silences(store)
        self.k_migrated = store.key("notify:telegram:migrated")
        self._claim = self.redis.register_script(scripts.CLAIM)
        self._begin = self.redis.register_script(scripts.BEGIN)
        self._lease = self.redis.register_script(scripts.LEASE)
        self._renew = self.redis.register_script(scripts.RENEW)
        self._release = self.redis.register_script(scripts.RELEASE)

    def group(self, dest: str) -> str:
        return f"{GROUP_PREFIX}{dest}"

    def _k(self, what: str, dest: str) -> str:
        return self.store.key(f"notify:{what}:{dest}")

    def _k_claim(self, dest: str, alert_id: str) -> str:
        return self.store.key(f"notify:claim:{dest}:{alert_id}")

    # ---- delivery marks and attempts -----------------------------------------------------

    async def mark(self, dest: str, alert_id: str) -> Mark | None:
        return _mark(await self.redis.hget(self._k("sent", dest), alert_id))

    async def lookup(
        self, dest: str, alert_id: str, now: float | None = None
    ) -> tuple[Mark | None, Attempt | None, list[Silence]]:
        """(delivery mark, attempt mark, the silences as :meth:`Silences.all` has them but
        without their counts) in one round trip: what the worker reads for each alert."""
        now = time.time() if now is None else now
        await self.silences.carry_old_mutes()  # the first time only
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self._k("sent", dest), alert_id)
        pipe.hget(self._k("attempt", dest), alert_id)
        self.silences.read(pipe)
        raw_mark, raw_attempt, raw_silences = await pipe.execute()
        return _mark(raw_mark), _attempt(raw_attempt), await self.silences.parse(raw_silences, now)

    async def claim(self, dest: str, alert_id: str, owner: str, ttl: float) -> bool:
        """Take (or keep) the claim of one alert at one destination; False while another
        owner holds it."""
        r = await self._claim(keys=[self._k_claim(dest, alert_id)], args=[owner, _ms(ttl)])
        return bool(int(r))

    async def begin_attempt(
        self, dest: str, alert_id: str, part: int, owner: str, ttl: float
    ) -> int:
        """Just before a request: check that the claim is still ours (renewing it) and that
        the delivery mark still says `part` is next, and write the attempt mark, atomically.
        1: send. 0: another owner holds the claim. -1: the part was delivered (or the alert
        parked or dropped) by another owner meanwhile."""
        r = await self._begin(
            keys=[self._k_claim(dest, alert_id), self._k("attempt", dest), self._k("sent", dest)],
            args=[owner, _ms(ttl), alert_id, f"{part}|{SENDING}", part],
        )
        return int(r)

    async def end_attempt(self, dest: str, alert_id: str, part: int, *, unknown: bool) -> None:
        """After a failed request: `unknown` keeps the evidence that it may have been posted;
        otherwise (known not sent) the attempt mark goes."""
        if unknown:
            await self.redis.hset(self._k("attempt", dest), alert_id, f"{part}|{UNKNOWN}")
        else:
            await self.redis.hdel(self._k("attempt", dest), alert_id)

    async def record_part(
        self,
        dest: str,
        alert_id: str,
        parts: int,
        ids: list[str],
        *,
        final: bool,
        entry_id: str | None,
        noted: bool = False,
    ) -> None:
        """Record an accepted part. On the final one also acknowledge the outbox entry (or,
        for a parked alert, `entry_id` None, take it out of the parked hash) and release the
        claim, in the same transaction."""
        pipe = self.redis.pipeline(transaction=True)
        status = "sent" if final else "partial"
        doc = {"status": status, "parts": parts, "ids": ids, "noted": noted, "at": time.time()}
        pipe.hset(self._k("sent", dest), alert_id, orjson.dumps(doc))
        pipe.hdel(self._k("attempt", dest), alert_id)
        if final:
            if entry_id is not None:
                pipe.xack(self.store.k_outbox, self.group(dest), entry_id)
            pipe.hdel(self._k("parked", dest), alert_id)
            pipe.hdel(self._k("retry", dest), alert_id)
            pipe.delete(self._k_claim(dest, alert_id))
        await pipe.execute()

    async def ack_only(
        self,
        dest: str,
        entry_id: str,
        alert_id: str | None = None,
        *,
        silenced: tuple[Alert, Silence] | None = None,
    ) -> None:
        """Acknowledge an entry that is not to be sent here (routing, silence, duplicate) and
        release the alert's claim; an alert `silenced` is recorded as suppressed by it in the
        same transaction."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.store.k_outbox, self.group(dest), entry_id)
        if alert_id is not None:
            pipe.delete(self._k_claim(dest, alert_id))
        if silenced is not None:
            self.silences.record(pipe, dest, silenced[0], silenced[1], time.time())
        await pipe.execute()

    async def release_claim(self, dest: str, alert_id: str, owner: str) -> None:
        await self._release(keys=[self._k_claim(dest, alert_id)], args=[owner])

    # ---- parked alerts ---------------------------------------------------------------------

    async def park(
        self,
        dest: str,
        alert: Alert,
        *,
        entry_id: str | None,
        entry: str,
        reason: str,
        error: str,
        tries: int,
        mark: Mark | None,
        now: float,
        max_parked: int | None = None,
    ) -> list[str]:
        """Set the alert aside for this destination: parked record, mark, log entry and (when
        it comes from the outbox) the XACK, in one transaction. The attempt mark stays: if the
        last attempt's outcome is unknown, the redelivery says it may repeat. Then, when more
        than `max_parked` alerts are parked here, the oldest are dropped (:meth:`shed`);
        returns their ids."""
        rec = {
            "alert": alert.dumps().decode(),
            "entry": entry,
            "reason": reason,
            "error": error[:1000],
            "at": now,
            "tries": tries,
        }
        doc = {
            "status": "parked",
            "parts": mark.parts if mark else 0,
            "ids": mark.ids if mark else [],
            "noted": mark.noted if mark else False,
            "at": now,
            "error": error[:300],
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._k("parked", dest), alert.id, orjson.dumps(rec))
        pipe.hset(self._k("sent", dest), alert.id, orjson.dumps(doc))
        pipe.hdel(self._k("retry", dest), alert.id)
        event: dict[Any, Any] = {
            "dest": dest,
            "alert_id": alert.id,
            "entry": entry,
            "event": f"parked: {reason}",
            "error": error[:1000],
            "at": repr(now),
        }
        pipe.xadd(self.k_dead, event, maxlen=DEAD_MAXLEN, approximate=True)
        if entry_id is not None:
            pipe.xack(self.store.k_outbox, self.group(dest), entry_id)
        pipe.delete(self._k_claim(dest, alert.id))
        pipe.hlen(self._k("parked", dest))
        res = await pipe.execute()
        if max_parked is None or int(res[-1]) <= max_parked:
            return []
        return await self.shed(dest, max_parked)

    async def shed(self, dest: str, keep: int) -> list[str]:
        """Drop the oldest parked alerts of `dest` (outbox order) until `keep` are left: each
        is marked "dropped" and goes, with its alert, to the dead-letter log; the overflow
        count of `dest` grows by as many; one transaction. Returns the ids dropped."""
        over = (await self.parked(dest))[: -keep if keep > 0 else None]
        if not over:
            return []
        now = time.time()
        why = f"dropped: over max_parked ({keep})"
        pipe = self.redis.pipeline(transaction=True)
        for p in over:
            doc = {"status": "dropped", "parts": 0, "ids": [], "at": now, "why": why}
            pipe.hdel(self._k("parked", dest), p.alert_id)
            pipe.hdel(self._k("retry", dest), p.alert_id)
            pipe.hset(self._k("sent", dest), p.alert_id, orjson.dumps(doc))
            event: dict[Any, Any] = {
                "dest": dest,
                "alert_id": p.alert_id,
                "entry": p.entry,
                "event": why,
                "reason": p.reason,
                "error": p.error[:1000],
                "alert": p.alert.dumps().decode() if p.alert is not None else "",
                "at": repr(now),
            }
            pipe.xadd(self.k_dead, event, maxlen=DEAD_MAXLEN, approximate=True)
        pipe.hincrby(self.k_overflow, dest, len(over))
        await pipe.execute()
        return [p.alert_id for p in over]

    async def overflowed(self, dest: str) -> int:
        """How many parked alerts of `dest` were dropped to keep ``max_parked``."""
        return int(await self.redis.hget(self.k_overflow, dest) or 0)

    async def parked(self, dest: str) -> list[Parked]:
        """The alerts parked for `dest`, in outbox order."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self._k("parked", dest))
        pipe.hgetall(self._k("retry", dest))
        raw, retry = await pipe.execute()
        asked = {_s(k) for k in retry}
        out = []
        for k, v in raw.items():
            d = orjson.loads(v)
            try:
                alert: Alert | None = Alert.loads(d["alert"])
            except (KeyError, ValueError, TypeError):
                alert = None
            aid = _s(k)
            out.append(
                Parked(
                    dest=dest,
                    alert_id=aid,
                    alert=alert,
                    entry=str(d.get("entry", "")),
                    reason=str(d.get("reason", REJECTED)),
                    error=str(d.get("error", "")),
                    at=float(d.get("at", 0.0)),
                    tries=int(d.get("tries", 0)),
                    retry=aid in asked,
                )
            )
        return sorted(out, key=lambda p: _entry_key(p.entry))

    async def retry_requested(self, dest: str) -> int:
        """How many parked alerts of `dest` an operator asked to redeliver."""
        return int(await self.redis.hlen(self._k("retry", dest)))

    async def parked_count(self, dest: str) -> int:
        return int(await self.redis.hlen(self._k("parked", dest)))

    async def request_retry(self, dest: str, alert_ids: list[str] | None = None) -> int:
        """Ask for a redelivery of parked alerts (all of `dest` when `alert_ids` is None);
        returns how many are parked among those asked for."""
        present = [p.alert_id for p in await self.parked(dest)]
        ids = present if alert_ids is None else [a for a in alert_ids if a in present]
        if ids:
            await self.redis.hset(
                self._k("retry", dest), mapping={a: repr(time.time()) for a in ids}
            )
        return len(ids)

    async def drop(self, dest: str, alert_ids: list[str], *, why: str = "dropped") -> int:
        """Give up parked alerts for good (marked "dropped", logged); returns how many."""
        present = {p.alert_id for p in await self.parked(dest)}
        n = 0
        for aid in alert_ids:
            if aid not in present:
                continue
            doc = {"status": "dropped", "parts": 0, "ids": [], "at": time.time(), "why": why}
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(self._k("parked", dest), aid)
            pipe.hdel(self._k("retry", dest), aid)
            pipe.hset(self._k("sent", dest), aid, orjson.dumps(doc))
            pipe.xadd(
                self.k_dead,
                {"dest": dest, "alert_id": aid, "event": why, "at": repr(time.time())},
                maxlen=DEAD_MAXLEN,
                approximate=True,
            )
            await pipe.execute()
            n += 1
        return n

    async def dead_letters(self, dests: list[str], n: int = 10) -> list[Parked]:
        """The most recently parked alerts over `dests`, newest first."""
        every = [p for d in dests for p in await self.parked(d)]
        return sorted(every, key=lambda p: p.at, reverse=True)[:n]

    async def dead_count(self, dests: list[str]) -> int:
        return sum([await self.parked_count(d) for d in dests])

    # ---- failures in a row (the retry horizon) ---------------------------------------------

    async def outage_begin(
        self, dest: str, now: float, error: str, *, gap: float, continuing: bool = False
    ) -> float:
        """Note one more failure; returns when the current run of failures began. Unless the
        caller knows the run goes on (`continuing`), a failure more than `gap` seconds after
        the recorded last one starts a new run: the destination was not tried meanwhile (the
        notifier was stopped, say), so that old outage says nothing about this one."""
        k = self._k("outage", dest)
        last = None if continuing else await self.redis.hget(k, "last")
        pipe = self.redis.pipeline(transaction=True)
        if not continuing and (last is None or now - float(last) > gap):
            pipe.hset(k, mapping={"since": repr(now), "failures": 0})
        pipe.hincrby(k, "failures", 1)
        pipe.hset(k, mapping={"error": error[:300], "last": repr(now)})
        pipe.hget(k, "since")
        res = await pipe.execute()
        return float(res[-1])

    async def outage_end(self, dest: str) -> None:
        await self.redis.delete(self._k("outage", dest))

    async def outage(self, dest: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self._k("outage", dest))
        return {_s(k): _s(v) for k, v in raw.items()}

    # ---- one deliverer per destination -------------------------------------------------------

    async def acquire_lease(self, dest: str, owner: str, ttl: float) -> str | None:
        """Take or renew the destination's lease; None when held, else the holder's name."""
        r = await self._lease(keys=[self._k("lease", dest)], args=[owner, _ms(ttl)])
        return None if r in (1, b"1", "1") else _s(r)

    async def renew(self, dest: str, owner: str, ttl: float, alert_id: str | None) -> bool:
        """Extend the lease (and the claim of the alert in hand); False if the lease is lost."""
        keys = [self._k("lease", dest)]
        if alert_id is not None:
            keys.append(self._k_claim(dest, alert_id))
        return bool(int(await self._renew(keys=keys, args=[owner, _ms(ttl)])))

    async def release_lease(self, dest: str, owner: str) -> None:
        await self._release(keys=[self._k("lease", dest)], args=[owner])

    async def take_over(self, dest: str, consumer: str, min_idle: float) -> tuple[int, list[str]]:
        """XAUTOCLAIM every outbox entry of the destination's group pending for at least
        `min_idle` seconds with another consumer. Returns (entries taken, ids whose message is
        gone from the outbox: Redis drops those from the pending list).

        Relied on (redis.io XAUTOCLAIM, Redis >= 7): the reply is the cursor to pass as the next
        start ("0-0" when the scan is complete), the claimed entries, and the ids of entries
        that no longer exist in the stream, which are removed from the pending list; COUNT
        bounds each call (it scans at most ten times as many pending entries).
        """
        start, taken, gone = "0-0", 0, []
        while True:
            res: Any = await self.redis.xautoclaim(
                self.store.k_outbox,
                self.group(dest),
                consumer,
                min_idle_time=_ms(min_idle) if min_idle > 0 else 0,
                start_id=start,
                count=100,
            )
            start = _s(res[0])
            taken += len(res[1])
            if len(res) > 2:
                gone += [_s(x) for x in res[2]]
            if start == "0-0":
                return taken, gone

    async def read_pending(self, dest: str, consumer: str, count: int) -> list[tuple[str, Any]]:
        """This consumer's unacknowledged entries: (id, Alert) or (id, None) when the entry's
        message is gone from the stream."""
        resp: Any = await self.redis.xreadgroup(
            self.group(dest), consumer, {self.store.k_outbox: "0"}, count=count
        )
        out: list[tuple[str, Any]] = []
        for _stream, entries in resp or ():
            for eid, f in entries:
                out.append((_s(eid), Alert.loads(f[b"alert"]) if f else None))
        return out

    async def pending_count(self, dest: str) -> int:
        try:
            info: Any = await self.redis.xpending(self.store.k_outbox, self.group(dest))
        except Exception:  # the group does not exist yet
            return 0
        return int(info.get("pending", 0)) if isinstance(info, dict) else 0

    async def upgrade(self, dests: list[str]) -> int:
        """Carry over the state of versions before parking (once per store): the in-flight
        string becomes an attempt mark, and dead letters whose mark says "dead" become parked
        alerts ("rejected": they wait for ``stressbot deadletters retry``). Returns how many
        dead letters were carried over."""
        if not await self.redis.set(self.store.key("notify:upgraded"), "1", nx=True):
            return 0
        for d in dests:
            raw = await self.redis.get(self._k("inflight", d))
            if raw is not None and await self.redis.type(self._k("inflight", d)) in (
                b"string",
                "string",
            ):
                aid, _, part = _s(raw).rpartition("#")
                if aid and part.isdigit():
                    await self.redis.hset(self._k("attempt", d), aid, f"{part}|{SENDING}")
                await self.redis.delete(self._k("inflight", d))
        n = 0
        rows: Any = await self.redis.xrange(self.k_dead, "-", "+")
        for _eid, f in rows:
            e = {_s(k): v for k, v in f.items()}
            if "event" in e or "alert" not in e:
                continue
            dest, aid = _s(e.get("dest", b"")), _s(e.get("alert_id", b""))
            mark = await self.mark(dest, aid)
            if dest in dests and mark is not None and mark.status == "parked":
                if await self.redis.hexists(self._k("parked", dest), aid):
                    continue
                rec = {
                    "alert": _s(e["alert"]),
                    "entry": _s(e.get("entry", b"")),
                    "reason": REJECTED,
                    "error": _s(e.get("error", b"")),
                    "at": float(e.get("at", b"0")),
                    "tries": 0,
                }
                await self.redis.hset(self._k("parked", dest), aid, orjson.dumps(rec))
                n += 1
        return n

    # ---- Telegram chat migrations ----------------------------------------------------------

    async def chat_migrations(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.k_migrated)
        return {_s(k): int(v) for k, v in raw.items()}

    async def record_migration(self, old: int | str, new: int) -> None:
        await self.redis.hset(self.k_migrated, str(old), str(new))

    # ---- mutes: one kind of silence (bot/notify/silences.py) -------------------------------

    async def mute(self, target: str, until: float) -> None:
        await self.silences.mute(target, until)

    async def unmute(self, target: str | None) -> int:
        """End one mute (or every mute when `target` is None); returns how many went."""
        return await self.silences.unmute(target)

    async def mutes(self, now: float | None = None) -> dict[str, float]:
        """Active mutes (rule id or ``*`` -> expiry)."""
        return await self.silences.mutes(now)

    async def muted(self, rule: str, now: float | None = None) -> float | None:
        """The expiry of the mute that silences `rule`, or None."""
        return muted_until(await self.mutes(now), rule)


def group_destination(group: str) -> str:
    """The destination whose outbox consumer group is `group` (:meth:`Ledger.group`'s inverse);
    a group not named by the notifier is returned as it is."""
    return group[len(GROUP_PREFIX) :] if group.startswith(GROUP_PREFIX) else group


def follow_migrations(chat_id: int | str, migrations: dict[str, int]) -> int | str:
    """The chat id `chat_id` is known now by (following a chain of migrations)."""
    seen: set[str] = set()
    cur: int | str = chat_id
    while str(cur) in migrations and str(cur) not in seen:
        seen.add(str(cur))
        cur = migrations[str(cur)]
    return cur


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
