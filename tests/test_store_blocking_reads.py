"""Every blocking read (XREAD/XREADGROUP with BLOCK) gives up within its block time plus
``BLOCK_MARGIN`` when Redis does not answer, instead of waiting out the 30 s socket timeout
(redis-py bounds a read by ``socket_timeout`` alone; see bot/store/redis_store.py). The node
that does not answer is a Cluster master stopped with SIGSTOP: its connections stay open and
nothing comes back, deterministically, which is what a frozen or cut-off node does while the
rest of the cluster goes CLUSTERDOWN over it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from bot.core.models import Tick
from bot.store.connection import connect, is_outage
from bot.store.redis_store import BLOCK_MARGIN, Store, read_timeout
from tests.fake_feeds import wait_until
from tests.redis_server import OwnCluster

SLACK = 1.0  # seconds: a loaded two-core machine's scheduling on top of the bound


def test_the_bound_is_the_block_time_plus_the_margin_and_block_0_is_refused() -> None:
    assert read_timeout(250) == pytest.approx(0.25 + BLOCK_MARGIN)
    assert read_timeout(1000) == pytest.approx(1.0 + BLOCK_MARGIN)
    assert BLOCK_MARGIN < 30.0 / 5  # well inside the socket timeout it replaces
    with pytest.raises(ValueError, match="BLOCK 0 waits forever"):
        read_timeout(0)


async def _given_up_within(read: Awaitable[Any], block_ms: int) -> float:
    """Seconds `read` took to raise the bound's TimeoutError (an outage)."""
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer a read blocking") as e:
        await read
    assert is_outage(e.value)
    took = time.monotonic() - t0
    assert took <= read_timeout(block_ms) + SLACK, took
    return took


async def test_blocking_reads_from_a_cluster_node_that_stopped_answering_give_up_in_time(
    tmp_path: Path,
) -> None:
    """On main both reads waited the 30 s socket timeout (the test's 10 s bound then
    failed it); after the node answers again the same client reads the right replies (the
    abandoned reads' connections were dropped, not reused)."""
    async with OwnCluster(tmp_path) as cluster:
        conn = await connect(cluster.url)
        try:
            store = Store(conn.redis, prefix="blocking")
            await store.add_ticks([Tick(1_700_000_000.0, "BTC/USD", 100.0)])
            await store.ensure_group("notify:desk", start="$")
            owner = await cluster.owner_of(store.k_ticks)
            owner.pause()
            try:
                async with asyncio.timeout(10):  # without the bound: 30 s
                    ticks = await _given_up_within(store.read_ticks("$", block_ms=250), 250)
                async with asyncio.timeout(10):
                    read = store.read_group("notify:desk", "c1", block_ms=1000)
                    group = await _given_up_within(read, 1000)
                print(
                    f"blocking reads gave up after {ticks:.2f} s (XREAD BLOCK 250) and "
                    f"{group:.2f} s (XREADGROUP BLOCK 1000)"
                )
            finally:
                owner.resume()

            async def reads_right() -> bool:
                try:
                    ticks = await store.read_ticks("0-0", block_ms=250)
                    return [t.value for _, t in ticks] == [100.0]
                except Exception:  # CLUSTERDOWN until the cluster sees the node again
                    return False

            await wait_until(reads_right, within=30, what="the cluster answering again")
            assert await store.read_group("notify:desk", "c1", block_ms=250) == []
        finally:
            await conn.close()
