"""Shared fixtures: a real Redis server (never a mock) and the reference material in ../shared."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.store.redis_store import Store

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STRESSBOT_SHARED", ROOT.parent / "shared"))
HISTORY = SHARED / "data" / "history"
FIXTURES = SHARED / "fixtures"


def shared_path(*parts: str) -> Path:
    """A file in ../shared, or skip the test with the reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the shared reference material beside the clone)")
    return p


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:  # pragma: no cover - the environment, not the code
        pytest.fail(
            f"tests need a real Redis at {REDIS_URL} ({e}); start one with: redis-server "
            "--daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
        )
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: Redis) -> AsyncIterator[Store]:
    """A store in a namespace of its own, deleted after the test."""
    s = Store(redis, prefix=f"test:{uuid.uuid4().hex[:12]}")
    yield s
    await s.clear()
