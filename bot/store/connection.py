"""Connecting to Redis (the `[redis]` config section), or to the embedded in-process store
when none is reachable."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.core.config_types import Strict
from bot.core.errors import StoreUnavailable
from bot.store.redis_store import Store

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisConfig(Strict):
    url: str | None = Field(default=None, description="overridden by REDIS_URL when set")
    prefix: str = "stressbot"
    tick_maxlen: int = Field(default=200_000, ge=1000)


def redis_url(configured: str | None = None) -> str:
    """`REDIS_URL` from the environment wins over the config file."""
    return os.environ.get("REDIS_URL") or configured or DEFAULT_REDIS_URL


async def connect(
    url: str, *, allow_embedded: bool = False, connect_timeout: float = 2.0
) -> tuple[Redis, bool]:
    """Return (client, embedded). Falls back to the embedded store only if allowed.

    The embedded store (fakeredis) speaks the same commands in-process and keeps nothing
    after the process exits; it is for demos and replays on machines without a Redis server.
    """
    client = Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=30.0)
    try:
        await asyncio.wait_for(client.ping(), connect_timeout)
        return client, False
    except (RedisError, OSError, TimeoutError) as e:
        await client.aclose()
        if not allow_embedded:
            raise StoreUnavailable(
                f"cannot reach Redis at {_redact(url)}: {e}. Start one (redis-server) or set "
                "REDIS_URL."
            ) from e
        import fakeredis  # local: only needed on this path

        log.warning("no Redis at %s (%s): using the embedded in-process store", _redact(url), e)
        return fakeredis.FakeAsyncRedis(), True


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
    redis, embedded = await connect(redis_url(cfg.url), allow_embedded=allow_embedded)
    prefix = cfg.prefix if namespace is None else f"{cfg.prefix}:{namespace}"
    try:
        yield Store(redis, prefix=prefix, tick_maxlen=cfg.tick_maxlen), embedded
    finally:
        await redis.aclose()
