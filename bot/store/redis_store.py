"""The Redis store: everything that must survive a restart lives here.

Key layout (every key starts with ``{p}``: the store's prefix, default ``stressbot``, or on
Redis Cluster the prefix as a hash tag, ``{stressbot}``, so all of them share one slot; every
name is made by :meth:`Store.key`, see :mod:`bot.store.keys`):

``{p}:ticks``          stream   live ticks written by connectors, trimmed to ``tick_maxlen``
``{p}:checkpoint``     hash     engine snapshot: ``position``, ``fingerprint``, ``state``,
                                 ``clock``, ``pages_rev`` (the revision of the pages below)
``{p}:pages``          hash     the checkpoint's series as pages of an hour, ``SYMBOL:PAGE`` ->
                                 JSON (:mod:`bot.engine.pages`; written with the checkpoint)
``{p}:rules``          hash     rule id -> JSON rule state (same transaction as the checkpoint)
``{p}:latest``         hash     symbol -> JSON {ts, value} of the newest value the engine holds
``{p}:outbox``         stream   alerts; each notifier destination reads it with its own group
``{p}:feeds``          hash     feed name -> JSON health record (connectors)
``{p}:engine``         string   JSON status record of the engine (input lost on a resume, ...)
``{p}:engine:lease``   string   the active engine: ``{token}:{owner}``, with a TTL (``SET PX``)
``{p}:engine:fence``   string   the last fencing token handed out (``INCR``)
``{p}:engine:standby`` hash     owner -> JSON record of each engine standing by
``{p}:series:{sym}``   zset     recent (ts, value) points per symbol, trimmed to a retention,
                                 for charts and /status (written with each checkpoint)

An alert and the checkpoint that accounts for it are written in one Lua script, so after a
crash the engine either resumes before the tick that raised it (and raises it again, once) or
after it (and the alert is already in the outbox): never both, never neither.

One active engine at a time: :meth:`Store.acquire_engine_lease` takes ``{p}:engine:lease``
when it is free (a Lua script: ``GET``, then ``INCR`` of the fence and ``SET ... PX``, which
is what ``SET NX PX`` does, plus a fencing token that only ever grows), renews it while it is
ours, and refuses while another owner holds it. A live commit carries the lease value it was
granted (``fence``) and is one Lua script that compares it with the lease *before* it writes
the outbox and the checkpoint, atomically (Redis runs a script without interleaving other
commands): a leader paused past its TTL (SIGSTOP, a long GC, a VM freeze) whose lease another
engine took cannot write after the takeover; its commit raises :class:`FencedOut`. The same
script writes the rule states, the latest values and the new chart points, and the engine's
status record is written by a fenced script too (:meth:`Store.set_engine_status`), so
nothing the leader writes escapes the fence. Replay commits pass no fence (the same script
skips the check). The scripts are in :mod:`bot.store.scripts`.

Blocking reads (``XREAD``/``XREADGROUP`` with ``BLOCK``: the engine's tick reads, the
notifiers' outbox reads) are bounded by their block time plus :data:`BLOCK_MARGIN`
(:func:`read_timeout`) and raise ``TimeoutError`` (an outage, :func:`bot.store.connection.
is_outage`) past it, so a stop or an outage is noticed within seconds even when the server
stops answering. redis-py (8.1, checked in its source) does not bound them itself: a command
reads its reply with ``Connection.read_response()``, whose timeout falls back to the client's
``socket_timeout`` (30 s here, :mod:`bot.store.connection`); no per-command timeout is
passed, the Cluster client's ``ClusterNode.parse_response`` calls it the same way, and the
block time is not taken into account (redis/redis-py#2807, open: a blocking command's
timeout cannot exceed ``socket_timeout``; #3138: XREAD with ``block`` in asyncio; the fixes
proposed, #4143 and #4151, would lengthen the read to the block time, not bound it). So a
node that stops answering (frozen, cut off, or one the cluster is CLUSTERDOWN about) kept a
blocked read waiting the whole socket timeout, and a plain client's own ``Retry`` may then
try again. Abandoning the read is safe: ``read_response`` disconnects the connection on any
``BaseException``, cancellation included ("A lot of code relies on this behaviour",
redis/redis-py#1128), so the late reply can never be read as the next command's (the
off-by-one of redis/redis-py#2624); the Cluster node releases that connection in a
``finally`` and opens a new one on its next command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.core.models import Alert, PageWrite, Tick
from bot.store import scripts
from bot.store.keys import key_base

log = logging.getLogger(__name__)

#: Seconds a blocking read may take beyond its block time before it counts as an outage: more
#: than :func:`bot.store.connection.connect`'s 2 s connect timeout, so a read that has to
#: reconnect first (after a failover: ask the Sentinels, then dial the master) still fits.
BLOCK_MARGIN = 3.0


def read_timeout(block_ms: int) -> float:
    """Seconds a read blocking `block_ms` may take in all (see the module docstring)."""
    if block_ms <= 0:
        raise ValueError(
            f"block_ms must be > 0, got {block_ms}: BLOCK 0 waits forever, and every read "
            "has to come back to see a stop"
        )
    return block_ms / 1000 + BLOCK_MARGIN


async def _bounded(read: Callable[[], Awaitable[Any]], block_ms: int | None) -> Any:
    """The reply of `read()` (a Redis command blocking `block_ms`, or not at all with None),
    bounded by :func:`read_timeout`."""
    if block_ms is None:
        return await read()
    limit = read_timeout(block_ms)
    try:
        async with asyncio.timeout(limit):
            return await read()
    except TimeoutError as e:
        raise TimeoutError(
            f"Redis did not answer a read blocking {block_ms} ms within {limit:.2f} s"
        ) from e


class FencedOut(Exception):
    """A commit was refused: the engine lease it carried is no longer the current one."""


class PagesOutOfStep(Exception):
    """A commit was refused: the series pages in the store are not those its pages were
    written against (a failover lost a commit, the store was emptied); the engine writes
    them all again."""


@dataclass(slots=True, frozen=True)
class StreamInfo:
    """What the tick stream says about itself (XINFO STREAM)."""

    added: int  # entries ever added
    length: int  # entries held now (the rest were trimmed)
    first_id: str | None  # the oldest entry still held

    @property
    def removed(self) -> int:
        return self.added - self.length


def stream_id(text: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class Checkpoint:
    """Where the engine is in its input, and the state it had there."""

    position: str  # opaque to the store: a stream id live, "file:row" in replay
    fingerprint: str  # identifies the input and rules the state belongs to
    clock: float  # event time, epoch seconds UTC
    state: bytes  # engine snapshot (JSON)
    # its series pages (`bot.engine.pages`): what to write with it, or what the store held
    pages: PageWrite | None = None


class Store:
    """The store of one namespace (`prefix`) on a Redis client: a plain or Sentinel-managed
    :class:`redis.asyncio.Redis`, or a :class:`redis.asyncio.cluster.RedisCluster` (which
    speaks the same command API; `hash_tag` then defaults to True, see :mod:`bot.store.keys`).
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "stressbot",
        tick_maxlen: int = 200_000,
        *,
        hash_tag: bool | None = None,
    ):
        self.redis = redis
        self.prefix = prefix
        self.hash_tag = is_cluster(redis) if hash_tag is None else hash_tag
        self.base = key_base(prefix, self.hash_tag)
        self.tick_maxlen = tick_maxlen
        #: replicas a fenced (live engine) commit waits for with WAIT, and for how long (s)
        self.wait_replicas = 0
        self.wait_timeout = 0.5
        self.last_wait: int | None = None  # replicas the last WAIT reported
        self.k_ticks = self.key("ticks")
        self.k_checkpoint = self.key("checkpoint")
        self.k_pages = self.key("pages")
        self.k_rules = self.key("rules")
        self.k_latest = self.key("latest")
        self.k_outbox = self.key("outbox")
        self.k_feeds = self.key("feeds")
        self.k_engine = self.key("engine")
        self.k_lease = self.key("engine:lease")
        self.k_fence = self.key("engine:fence")
        self.k_standby = self.key("engine:standby")
        self._add_script = redis.register_script(scripts.ADD_TICKS)
        self._lease_script = redis.register_script(scripts.ENGINE_LEASE)
        self._renew_script = redis.register_script(scripts.ENGINE_RENEW)
        self._release_script = redis.register_script(scripts.ENGINE_RELEASE)
        self._commit_script = redis.register_script(scripts.FENCED_COMMIT)
        self._fenced_set = redis.register_script(scripts.FENCED_SET)

    def key(self, name: str) -> str:
        """A key in this store's namespace: every key stressbot writes is made here."""
        return f"{self.base}:{name}"

    def series_key(self, symbol: str) -> str:
        return self.key(f"series:{symbol}")

    async def clear(self) -> None:
        """Delete every key of this namespace (a fresh replay)."""
        keys = [
            k async for k in self.redis.scan_iter(match=_glob_escape(self.base) + ":*", count=1000)
        ]
        for i in range(0, len(keys), 500):
            await self.redis.delete(*keys[i : i + 500])

    # ---- connectors -> store -------------------------------------------------------------

    async def add_ticks(self, ticks: Sequence[Tick]) -> None:
        """Append ticks to the tick stream: one script call per batch, one trim per batch.

        A redis-py pipeline spends ~17 us of client CPU per XADD; the script sends the batch
        as flat arguments, which is about 4x cheaper per tick (bench/bench_connectors.py).
        """
        for i in range(0, len(ticks), scripts.ADD_CHUNK):
            args: list[str | float] = [self.tick_maxlen]
            for t in ticks[i : i + scripts.ADD_CHUNK]:
                args += (t.symbol, repr(t.value), repr(t.ts), t.source)
            await self._add_script(keys=[self.k_ticks], args=args)

    async def read_ticks(
        self, after: str, count: int = 5000, block_ms: int | None = None
    ) -> list[tuple[str, Tick]]:
        """Ticks after stream id `after` (``0-0`` for the start), oldest first; with
        `block_ms`, waiting up to that long for one, and ``TimeoutError`` when Redis does not
        answer within :func:`read_timeout`."""
        resp: Any = await _bounded(
            lambda: self.redis.xread({self.k_ticks: after}, count=count, block=block_ms),
            block_ms,
        )
        out: list[tuple[str, Tick]] = []
        for _stream, entries in resp or ():
            for entry_id, f in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                out.append((eid, _tick_from_fields(f)))
        return out

    async def tick_stream_info(self) -> StreamInfo | None:
        """Entries added and held, and the oldest held: how many a trim removed. None when
        there is no stream yet."""
        try:
            info: Any = await self.redis.xinfo_stream(self.k_ticks)
        except ResponseError:
            return None
        first = info.get("first-entry")
        added = info.get("entries-added")
        length = int(info.get("length", 0))
        return StreamInfo(
            added=int(added) if added is not None else length,
            length=length,
            first_id=_s(first[0]) if first else None,
        )

    # ---- engine checkpoint -----------------------------------------------------------------

    async def load_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the series pages it holds (one round trip)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.k_checkpoint)
        pipe.hgetall(self.k_pages)
        raw, pages = await pipe.execute()
        if not raw:
            return None
        d = {_s(k): v for k, v in raw.items()}
        rev = d.get("pages_rev")
        return Checkpoint(
            position=_s(d["position"]),
            fingerprint=_s(d["fingerprint"]),
            clock=float(d["clock"]),
            state=bytes(d["state"]),
            pages=PageWrite(
                None, _s(rev) if rev else "", {_s(k): bytes(v) for k, v in pages.items()}
            ),
        )

    async def has_checkpoint(self) -> bool:
        return bool(await self.redis.exists(self.k_checkpoint))

    async def commit(
        self,
        checkpoint: Checkpoint,
        alerts: Sequence[Alert] = (),
        rule_states: dict[str, Any] | None = None,
        latest: dict[str, tuple[float, float]] | None = None,
        *,
        fence: str | None = None,
        series: dict[str, list[tuple[float, float]]] | None = None,
        keep_after: float = float("-inf"),
    ) -> list[str]:
        """Write alerts and the checkpoint that accounts for them atomically (one Lua
        script), with its series pages, the rule states, the latest values and (`series`)
        new chart points per symbol, dropping points older than `keep_after`.

        Returns the outbox stream ids of the alerts, in order. With `fence` (the engine lease
        value granted by :meth:`acquire_engine_lease`) the script first checks the lease
        still holds exactly that value, and raises :class:`FencedOut` when it does not. A
        write of the pages against a base revision (`PageWrite.base`) the store's pages do
        not have raises :class:`PagesOutOfStep`. Either writes nothing at all: no alert,
        checkpoint, page, rule state, latest value or chart point.
        """
        pages = checkpoint.pages or PageWrite(None, "")
        args: list[str | bytes | float] = [fence or "", pages.base or "", pages.rev]
        args.append(len(alerts))
        for a in alerts:
            args += (a.id, a.dumps())
        args += (checkpoint.position, checkpoint.fingerprint, repr(checkpoint.clock))
        args.append(checkpoint.state)
        rs = rule_states or {}
        args.append(len(rs))
        for k, v in rs.items():
            args += (k, orjson.dumps(v))
        lt = latest or {}
        args.append(len(lt))
        for sym, (t, v) in lt.items():
            args += (sym, orjson.dumps({"ts": t, "value": v}))
        args.append(_score(keep_after))
        keys = [self.k_lease, self.k_outbox, self.k_checkpoint, self.k_rules, self.k_latest]
        keys.append(self.k_pages)
        for sym, pts in (series or {}).items():
            if not pts:
                continue
            keys.append(self.series_key(sym))
            args.append(len(pts))
            for t, v in pts:
                args += (repr(t), _member(t, v))
        args.append(len(pages.put))
        for name, data in pages.put.items():
            args += (name, data)
        args.append(len(pages.drop))
        args += pages.drop
        if self.wait_replicas:
            res = await self._commit_and_wait(keys, args)
        else:
            res = await self._commit_script(keys=keys, args=args)
        if res and int(res[0]) == 2:
            raise PagesOutOfStep(
                f"the checkpoint pages in the store are at revision {_s(res[1]) or 'none'!r}, "
                f"not {pages.base!r} as this engine last wrote"
            )
        if not res or int(res[0]) != 1:
            raise FencedOut(f"engine lease {fence!r} is no longer ours (held by {_holder(res)})")
        return [_s(r) for r in res[1:]]

    async def _commit_and_wait(self, keys: list[str], args: list[str | bytes | float]) -> Any:
        """The commit script, then ``WAIT`` on the same connection (WAIT counts the replicas
        that have this connection's writes, so it must follow them on one connection: one
        pipeline). Fewer replicas than asked within the timeout is logged, not an error:
        the commit stands on the master."""
        pipe = self.redis.pipeline(transaction=False)
        await self._commit_script(keys=keys, args=args, client=pipe)
        pipe.wait(self.wait_replicas, max(1, int(self.wait_timeout * 1000)))
        res, acked = await pipe.execute()
        self.last_wait = int(acked)
        if self.last_wait < self.wait_replicas:
            log.warning(
                "store: commit reached %d of %d replica(s) within %.1f s (a failover now "
                "could lose it)",
                self.last_wait,
                self.wait_replicas,
                self.wait_timeout,
            )
        return res

    # ---- the engine lease --------------------------------------------------------------------

    async def acquire_engine_lease(self, owner: str, ttl: float) -> tuple[str | None, str | None]:
        """Take or renew the engine lease for `ttl` seconds. Returns (ours, holder): our lease
        value ``token:owner`` when we hold it (a new token when it was free), else None and
        the holder's value."""
        r: Any = await self._lease_script(
            keys=[self.k_lease, self.k_fence], args=[owner, max(1, int(ttl * 1000))]
        )
        ok, value = int(r[0]), _s(r[1])
        return (value, value) if ok else (None, value)

    async def renew_engine_lease(self, value: str, ttl: float) -> bool:
        """Extend the lease while it still holds `value`; False when it was lost."""
        r: Any = await self._renew_script(
            keys=[self.k_lease], args=[value, max(1, int(ttl * 1000))]
        )
        return bool(r)

    async def release_engine_lease(self, value: str) -> None:
        await self._release_script(keys=[self.k_lease], args=[value])

    async def engine_lease(self) -> str | None:
        raw: Any = await self.redis.get(self.k_lease)
        return _s(raw) if raw else None

    async def set_engine_standby(self, owner: str, record: dict[str, Any] | None) -> None:
        """Record (or with None remove) an engine standing by."""
        if record is None:
            await self.redis.hdel(self.k_standby, owner)
        else:
            await self.redis.hset(self.k_standby, owner, orjson.dumps(record))

    async def add_series(
        self, points: dict[str, list[tuple[float, float]]], keep_after: float
    ) -> None:
        """Add recent points per symbol and drop those older than `keep_after` (one round
        trip; unfenced: for replay, the live engine passes its points to :meth:`commit`)."""
        pipe = self.redis.pipeline(transaction=False)
        self._queue_series(pipe, {s: p for s, p in points.items() if p}, keep_after)
        await pipe.execute()

    def _queue_series(
        self, pipe: Any, points: dict[str, list[tuple[float, float]]], keep_after: float
    ) -> None:
        for sym, pts in points.items():
            key = self.series_key(sym)
            pipe.zadd(key, {_member(t, v): t for t, v in pts})
            pipe.zremrangebyscore(key, "-inf", f"({_score(keep_after)}")

    async def series(
        self, symbol: str, start: float = float("-inf"), end: float = float("inf")
    ) -> list[tuple[float, float]]:
        """Recent (ts, value) points of one symbol between `start` and `end`, oldest first."""
        raw: Any = await self.redis.zrangebyscore(self.series_key(symbol), start, end)
        out = []
        for m in raw:
            t, v = _s(m).split("|", 1)
            out.append((float(t), float(v)))
        return out

    async def publish_alert(self, alert: Alert) -> str:
        """Put one alert in the outbox outside the engine (e.g. a /test alert). Returns its id."""
        eid: Any = await self.redis.xadd(self.k_outbox, {"id": alert.id, "alert": alert.dumps()})
        return _s(eid)

    async def rule_states(self) -> dict[str, dict[str, Any]]:
        raw: Any = await self.redis.hgetall(self.k_rules)
        return {_s(k): orjson.loads(v) for k, v in raw.items()}

    async def latest(self) -> dict[str, tuple[float, float]]:
        raw: Any = await self.redis.hgetall(self.k_latest)
        out = {}
        for k, v in raw.items():
            d = orjson.loads(v)
            out[_s(k)] = (float(d["ts"]), float(d["value"]))
        return out

    # ---- outbox -> notifiers ---------------------------------------------------------------

    async def alerts(
        self, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[tuple[str, Alert]]:
        """Alerts in the outbox, oldest first."""
        entries: Any = await self.redis.xrange(self.k_outbox, start, end, count=count)
        return [(_s(eid), Alert.loads(f[b"alert"])) for eid, f in entries]

    async def recent_alerts(self, n: int) -> list[tuple[str, Alert]]:
        """The newest `n` alerts, newest first."""
        entries: Any = await self.redis.xrevrange(self.k_outbox, "+", "-", count=n)
        return [(_s(eid), Alert.loads(f[b"alert"])) for eid, f in entries]

    async def ensure_group(self, group: str, start: str = "0") -> None:
        """Create a consumer group on the outbox (idempotent). Start at 0: nothing is skipped."""
        try:
            await self.redis.xgroup_create(self.k_outbox, group, id=start, mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def read_group(
        self,
        group: str,
        consumer: str,
        count: int = 10,
        block_ms: int | None = None,
        pending: bool = False,
    ) -> list[tuple[str, Alert]]:
        """Outbox entries for a group: new ones, or (pending=True) this consumer's unacked
        ones; with `block_ms` as in :meth:`read_ticks`."""
        streams: dict[Any, Any] = {self.k_outbox: "0" if pending else ">"}
        resp: Any = await _bounded(
            lambda: self.redis.xreadgroup(group, consumer, streams, count=count, block=block_ms),
            block_ms,
        )
        out: list[tuple[str, Alert]] = []
        for _stream, entries in resp or ():
            for eid, f in entries:
                if f:  # a pending entry whose message was trimmed has no fields
                    out.append((_s(eid), Alert.loads(f[b"alert"])))
        return out

    async def ack(self, group: str, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        if ids:
            await self.redis.xack(self.k_outbox, group, *ids)

    # ---- engine status (for `stressbot feeds` and /status) ----------------------------------

    async def set_engine_status(self, status: dict[str, Any], *, fence: str | None = None) -> None:
        """Write the engine's status record; with `fence` only while the engine lease still
        holds that value (one script), else :class:`FencedOut` and nothing written."""
        if fence is None:
            await self.redis.set(self.k_engine, orjson.dumps(status))
            return
        res: Any = await self._fenced_set(
            keys=[self.k_lease, self.k_engine], args=[fence, orjson.dumps(status)]
        )
        if not res or int(res[0]) != 1:
            raise FencedOut(f"engine lease {fence!r} is no longer ours (held by {_holder(res)})")

    async def engine_status(self, fresh_within: float = 30.0) -> dict[str, Any]:
        """The active engine's status record, with ``lease`` (the current holder, None when no
        engine holds it) and ``standby`` (engines standing by that reported within
        `fresh_within` seconds)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.k_engine)
        pipe.get(self.k_lease)
        pipe.hgetall(self.k_standby)
        raw, lease, standby = await pipe.execute()
        out: dict[str, Any] = orjson.loads(raw) if raw else {}
        if not out and lease is None and not standby:
            return out
        now = time.time()
        out["lease"] = _s(lease) if lease else None
        out["standby"] = sorted(
            _s(k)
            for k, v in (standby or {}).items()
            if now - float(orjson.loads(v).get("updated", 0)) <= fresh_within
        )
        return out

    # ---- feed health ------------------------------------------------------------------------

    async def set_feed_status(self, feed: str, status: dict[str, Any]) -> None:
        await self.redis.hset(self.k_feeds, feed, orjson.dumps(status))

    async def feed_statuses(self) -> dict[str, dict[str, Any]]:
        raw: Any = await self.redis.hgetall(self.k_feeds)
        return {_s(k): orjson.loads(v) for k, v in raw.items()}


def _member(t: float, v: float) -> str:
    """A chart point as a sorted-set member (its score is `t`)."""
    return f"{t!r}|{v!r}"


def _score(x: float) -> str:
    """A score as Redis reads it (``-inf``/``+inf`` spelled its way)."""
    if x == float("-inf"):
        return "-inf"
    if x == float("inf"):
        return "+inf"
    return repr(x)


def _holder(res: Any) -> str:
    return _s(res[1]) if res and len(res) > 1 and res[1] else "nobody"


def is_cluster(redis: object) -> bool:
    """Is this client a Redis Cluster client (it routes each key to its slot's node)?"""
    from redis.asyncio.cluster import RedisCluster  # local: only this check needs it

    return isinstance(redis, RedisCluster)


def _glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _tick_from_fields(f: dict[bytes, bytes]) -> Tick:
    return Tick(
        ts=float(f[b"t"]),
        symbol=f[b"s"].decode(),
        value=float(f[b"v"]),
        source=f.get(b"src", b"").decode(),
    )
