"""Connecting to Redis (the `[redis]` config section): one server, a Sentinel-managed master,
or a Redis Cluster; or the embedded in-process store when no server is reachable.

Where Redis is (``REDIS_URL`` from the environment wins over the file's ``url``, which wins
over ``sentinels``/``service``; ``cluster = true`` turns a plain URL into the cluster's
first node):

``redis://[user:password@]host:port/db``                      one server (``rediss://``: TLS)
``redis+sentinel://[user:password@]host:port,host:port/service/db``  the master of
    `service`, as the Sentinels name it (``rediss+sentinel://``: TLS to the master)
``redis+cluster://[user:password@]host:port,host:port``       a Redis Cluster (db 0 only)

What redis-py (the installed 8.1) does with these, checked in its source and issues:

* **Sentinel** (``redis.asyncio.sentinel.Sentinel(...).master_for(service)``): a
  ``Redis`` on a ``SentinelConnectionPool`` whose ``SentinelManagedConnection.connect``
  asks the Sentinels for the master's address (``SENTINEL get-master-addr-by-name``) every
  time it opens a connection, and turns a ``READONLY`` reply (the master it still talks to
  was demoted to a replica) into a ``ConnectionError`` after disconnecting. So after a
  failover the next command fails with ``ConnectionError`` (``MasterNotFoundError`` while no
  master is known); the engine's and the services' backoff on store errors
  (``bot/runtime/live.py``) waits, and the next connection goes to the promoted replica.
  redis-py does not follow ``+switch-master`` events itself (redis/redis-py#3867), and its
  own connect retry can keep dialling the old address until it gives up (redis/redis-py
  #3560, #3874): our retry is a new connection, which asks the Sentinels again.
* **Cluster** (``redis.asyncio.cluster.RedisCluster``): routes each command by the key's hash
  slot and follows MOVED/ASK. Its ``pipeline(transaction=True)`` is supported in this version
  (``ClusterPipeline`` with a ``TransactionStrategy``: MULTI/EXEC on the one node of the
  slot, refused with "All keys involved in a cluster transaction must map to the same slot"
  otherwise); scripts (``register_script``/EVALSHA) run on the node of their keys' slot and
  need them in one slot (CROSSSLOT otherwise). The Redis Cluster specification ("Hash
  tags") makes a ``{tag}`` in a key name the only part hashed, which is how every key of a
  prefix is put in one slot (:mod:`bot.store.keys`). Older redis-py (before 6) refused
  ``transaction=True`` on a cluster pipeline (samuelcolvin/arq#385).
* **Replication is asynchronous**: a write acknowledged by the master may not have reached a
  replica when the master dies, and a failover then loses it (Redis docs, "Replication":
  Redis uses asynchronous replication by default; ``WAIT`` "does not make Redis a strongly
  consistent store": it reports how many replicas have the connection's writes, and an
  unconfirmed write is neither rolled back nor refused). With ``wait_replicas`` > 0 the
  engine's commit (checkpoint + outbox, one script) is followed by ``WAIT n timeout`` on
  the same connection (:meth:`Store.commit`): a commit no replica confirmed within
  ``wait_timeout`` is logged as one a failover could lose, at the price of up to
  ``wait_timeout`` per commit while replicas lag. To refuse such writes instead, the server
  side has ``min-replicas-to-write``/``min-replicas-max-lag``. What a failover does to the
  engine and the notifiers either way is measured in tests/test_redis_sentinel.py and stated
  in the README ("Redis Sentinel and Cluster").
* **What an outage is** (:func:`is_outage`, the one classification the engine and the
  services' restart use, ``bot/runtime/live.py``): a lost connection or a timeout, a Cluster
  healing (:data:`CLUSTER_TRANSIENT`), and ``NOREPLICAS``: the master refuses every write
  while fewer replicas than its ``min-replicas-to-write`` are connected with at most
  ``min-replicas-max-lag`` seconds of lag; "Reads still work. Writes start working again
  when enough replicas are connected" (Redis docs, "NOREPLICAS error"), so it is waited out
  like the rest, and logged as such (:func:`outage_reason`).
  redis-py has no class for it: its parser maps the first word of an error reply through
  ``BaseParser.EXCEPTION_CLASSES``, where NOREPLICAS is not listed, so it is a plain
  ``ResponseError`` (a ``NoReplicasError`` was proposed in redis/redis-py#1502 and closed
  unmerged). Checked against redis-server 7.0: a write command, a script that writes
  (``NOREPLICAS ... script: <sha>, on @user_script:1.``) and a MULTI/EXEC (the queued write is
  refused, EXEC answers EXECABORT, and redis-py raises the queued command's error annotated
  as ``Command # 1 (...) of pipeline caused error: ('NOREPLICAS ...',)``) all answer it;
  ``WAIT`` and reads do not (WAIT reports the replicas it counted, it never refuses).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import unquote, urlsplit

from pydantic import Field, model_validator
from redis.asyncio import Redis
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.core.config_types import Strict
from bot.core.errors import ConfigError, StoreUnavailable
from bot.store.redis_store import Store

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SOCKET_TIMEOUT = 30.0  # seconds: one command (a blocking read: redis_store.read_timeout)

Kind = Literal["server", "sentinel", "cluster"]

#: Errors a Redis Cluster answers while it heals (a node lost and not yet replaced: CLUSTERDOWN,
#: MASTERDOWN; a slot moving: TRYAGAIN). They are outages to wait out, like a lost connection;
#: redis-py retries them a few times itself and then raises them.
CLUSTER_TRANSIENT: tuple[type[BaseException], ...] = (ClusterDownError, TryAgainError)
#: What a Redis outage raises as a class (redis-py wraps socket errors; asyncio.timeout and
#: wait_for raise TimeoutError); :func:`is_outage` adds the NOREPLICAS refusal.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    *CLUSTER_TRANSIENT,
)
#: A NOREPLICAS reply, alone or as redis-py's pipeline annotates it (see the module docstring)
_NOREPLICAS = re.compile(
    r"(?:Command # \d+ \(.*\) of pipeline caused error: \(?['\"]?)?NOREPLICAS\b", re.S
)


def refuses_writes(e: BaseException) -> bool:
    """Is `e` the master refusing writes for want of replicas (NOREPLICAS)?"""
    return isinstance(e, ResponseError) and _NOREPLICAS.match(str(e)) is not None


def is_outage(e: BaseException) -> bool:
    """Is `e` Redis unavailable for now (an outage to wait out with backoff), rather than a
    mistake to report?"""
    return isinstance(e, OUTAGE_ERRORS) or refuses_writes(e)


def outage_reason(e: BaseException) -> str:
    """What the log says about an outage `e`."""
    if refuses_writes(e):
        return (
            "NOREPLICAS: Redis refuses writes while fewer replicas than its "
            "min-replicas-to-write are connected and in sync; waiting for a replica"
        )
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class RedisConfig(Strict):
    url: str | None = Field(default=None, description="overridden by REDIS_URL when set")
    prefix: str = "stressbot"
    tick_maxlen: int = Field(default=200_000, ge=1000)
    sentinels: list[str] = Field(
        default_factory=list, description="host:port of each Sentinel (instead of url)"
    )
    service: str | None = Field(default=None, description="the master's name in Sentinel")
    cluster: bool = Field(default=False, description="url is a node of a Redis Cluster")
    wait_replicas: int = Field(
        default=0, ge=0, description="replicas each engine commit waits for (WAIT)"
    )
    wait_timeout: float = Field(default=0.5, gt=0, description="seconds the WAIT may take")

    @model_validator(mode="after")
    def _one_way(self) -> RedisConfig:
        if self.sentinels and self.url:
            raise ValueError("give either url or sentinels (with service), not both")
        if self.sentinels and not self.service:
            raise ValueError("sentinels needs service: the master's name in the Sentinels")
        if self.sentinels and self.cluster:
            raise ValueError("sentinels and cluster = true exclude each other")
        for s in self.sentinels:
            _host_port(s, "sentinels")
        return self


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is, parsed from a URL or the config keys."""

    kind: Kind
    url: str  # as given (shown redacted), or one built from the config keys
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels or cluster nodes
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def redis_url(configured: str | None = None) -> str:
    """`REDIS_URL` from the environment wins over the config file."""
    return os.environ.get("REDIS_URL") or configured or DEFAULT_REDIS_URL


def redis_target(cfg: RedisConfig) -> RedisTarget:
    """The Redis the config (and ``REDIS_URL``) points at."""
    env = os.environ.get("REDIS_URL")
    if not env and not cfg.url and cfg.sentinels:
        hosts = tuple(_host_port(s, "sentinels") for s in cfg.sentinels)
        url = f"redis+sentinel://{','.join(cfg.sentinels)}/{cfg.service}/0"
        return RedisTarget("sentinel", url, hosts, service=cfg.service or "")
    target = parse_redis_url(env or cfg.url or DEFAULT_REDIS_URL)
    if cfg.cluster and target.kind == "server":
        target = _as_cluster(target)
    if target.kind == "cluster" and cfg.wait_replicas:
        raise ConfigError(
            "redis.wait_replicas: not supported on a Redis Cluster (WAIT counts the replicas "
            "of the node a connection talks to); leave it at 0"
        )
    return target


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a ``redis://``, ``redis+sentinel://`` or ``redis+cluster://`` URL (ConfigError,
    with the password hidden, when it is not one)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget("server", url)
    if scheme not in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        raise ConfigError(
            f"redis url {_redact(url)}: expected redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    rest = url.split("://", 1)[1]
    creds, _, rest = rest.rpartition("@")
    netloc, _, path = rest.partition("/")
    hosts = tuple(_host_port(h, f"redis url {_redact(url)}") for h in netloc.split(",") if h)
    if not hosts:
        raise ConfigError(f"redis url {_redact(url)}: no host:port given")
    user, _, password = creds.partition(":") if creds else ("", "", "")
    parts = [p for p in path.split("/") if p]
    base = RedisTarget(
        "cluster",
        url,
        hosts,
        username=unquote(user) or None,
        password=unquote(password) or None,
        tls=scheme.startswith("rediss"),
    )
    if scheme.endswith("cluster"):
        if parts and parts != ["0"]:
            raise ConfigError(f"redis url {_redact(url)}: a Redis Cluster has only db 0")
        return base
    if not parts or len(parts) > 2:
        raise ConfigError(
            f"redis url {_redact(url)}: expected redis+sentinel://host:port,.../service/db"
        )
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdecimal():
        raise ConfigError(f"redis url {_redact(url)}: db must be a number, got {db!r}")
    return RedisTarget(
        "sentinel",
        url,
        hosts,
        service=unquote(parts[0]),
        db=int(db),
        username=base.username,
        password=base.password,
        tls=base.tls,
    )


def _as_cluster(t: RedisTarget) -> RedisTarget:
    u = urlsplit(t.url)
    if t.url.startswith("unix:") or not u.hostname:
        raise ConfigError(f"redis: cluster = true needs a host:port url, got {_redact(t.url)}")
    return RedisTarget(
        "cluster",
        t.url,
        ((u.hostname, u.port or 6379),),
        username=unquote(u.username) if u.username else None,
        password=unquote(u.password) if u.password else None,
        tls=u.scheme == "rediss",
    )


def _host_port(text: str, where: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected host:port, got {text.strip()!r}")
    return host.strip("[]"), int(port)


Closer = Callable[[], Awaitable[None]]


def _client(target: RedisTarget, connect_timeout: float) -> tuple[Redis, Closer]:
    """A client for `target` (not connected yet) and what closes all it opened."""
    timeouts = {"socket_connect_timeout": connect_timeout, "socket_timeout": SOCKET_TIMEOUT}
    if target.kind == "server":
        r = Redis.from_url(target.url, **timeouts)  # type: ignore[arg-type]
        return r, r.aclose
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=dict(timeouts), **timeouts
        )
        master = sentinel.master_for(
            target.service,
            db=target.db,
            ssl=target.tls,
            username=target.username,
            password=target.password,
        )

        async def close() -> None:
            await master.aclose()
            await sentinel.aclose()

        return cast(Redis, master), close
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(h, p) for h, p in target.hosts]
    cluster = RedisCluster(
        startup_nodes=nodes,
        ssl=target.tls,
        username=target.username,
        password=target.password,
        socket_connect_timeout=connect_timeout,
        socket_timeout=SOCKET_TIMEOUT,
    )
    # RedisCluster speaks the command API Store uses (keys routed by slot), typed apart
    return cast(Redis, cluster), cluster.aclose


@dataclass(slots=True)
class Connection:
    redis: Redis
    embedded: bool
    close: Closer


async def connect(
    target: RedisTarget | str, *, allow_embedded: bool = False, connect_timeout: float = 2.0
) -> Connection:
    """Connect (and PING). Falls back to the embedded store only if allowed.

    The embedded store (fakeredis) speaks the same commands in-process and keeps nothing
    after the process exits; it is for demos and replays on machines without a Redis server.
    """
    t = parse_redis_url(target) if isinstance(target, str) else target
    client, close = _client(t, connect_timeout)
    try:
        await asyncio.wait_for(client.ping(), connect_timeout * 2)
        return Connection(client, False, close)
    except (RedisError, RedisClusterException, OSError, TimeoutError) as e:
        await close()
        where = f"{t.kind} {_redact(t.url)}" if t.kind != "server" else _redact(t.url)
        why = str(e).rstrip(".") or type(e).__name__
        if isinstance(e, TimeoutError) and not str(e):
            why = f"no answer within {connect_timeout * 2:.0f} s"
        if isinstance(e, MasterNotFoundError):  # it has no text of its own
            why = f"no Sentinel there named a master for {t.service!r}"
        if not allow_embedded:
            raise StoreUnavailable(
                f"cannot reach Redis at {where}: {why}. Start one (redis-server) or set REDIS_URL."
            ) from e
        import fakeredis  # local: only needed on this path

        log.warning("no Redis at %s (%s): using the embedded in-process store", where, why)
        fake = fakeredis.FakeAsyncRedis()
        return Connection(fake, True, fake.aclose)


def _redact(url: str) -> str:
    """Hide a password in a Redis URL before it is shown anywhere."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


@asynccontextmanager
async def open_store(
    cfg: RedisConfig, *, namespace: str | None = None, allow_embedded: bool = False
) -> AsyncIterator[tuple[Store, bool]]:
    """(store, embedded) for the `[redis]` section, closed on exit; `namespace` keeps a
    replay's keys apart from the live bot's (``{prefix}:{namespace}:...``)."""
    conn = await connect(redis_target(cfg), allow_embedded=allow_embedded)
    prefix = cfg.prefix if namespace is None else f"{cfg.prefix}:{namespace}"
    store = Store(conn.redis, prefix=prefix, tick_maxlen=cfg.tick_maxlen)
    store.wait_replicas, store.wait_timeout = cfg.wait_replicas, cfg.wait_timeout
    try:
        yield store, conn.embedded
    finally:
        await conn.close()
