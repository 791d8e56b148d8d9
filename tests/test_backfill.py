"""First-start backfill: recent public history into the tick stream, from a local FRED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.store.redis_store import Store
from connectors.config import BackfillConfig
from connectors.history.backfill import SOURCE, Backfill
from tests.fake_history_servers import FakeFred

NOW = datetime(2024, 6, 20, 18, 0, tzinfo=UTC).timestamp()


@pytest.fixture
async def fred() -> AsyncIterator[FakeFred]:
    srv = FakeFred()
    await srv.start()
    yield srv
    await srv.stop()


async def test_backfill_writes_recent_history_in_time_order(
    store: Store, fred: FakeFred, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRESSBOT_CACHE", str(tmp_path))
    cfg = BackfillConfig(days=10, symbols=["SPX", "IORB"], fred_url=fred.endpoint)
    bf = Backfill(cfg, store, clock=lambda: NOW)
    await bf.run(asyncio.Event())
    ticks = [t for _, t in await store.read_ticks("0-0", count=1000)]
    assert bf.written == len(ticks) > 0
    assert {t.symbol for t in ticks} == {"SPX", "IORB"}
    assert all(t.source == SOURCE and t.ts <= NOW for t in ticks)
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    spx_days = {datetime.fromtimestamp(t.ts, UTC).date() for t in ticks if t.symbol == "SPX"}
    assert len(spx_days) >= 6  # about two weeks of weekday closes


async def test_backfill_gives_up_quietly_when_the_source_is_down(
    store: Store,
    fred: FakeFred,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("STRESSBOT_CACHE", str(tmp_path))
    fred.broken.add("SP500")  # 503 every time: the download keeps retrying with backoff
    cfg = BackfillConfig(days=5, symbols=["SPX"], fred_url=fred.endpoint, timeout=1.0)
    bf = Backfill(cfg, store, clock=lambda: NOW)
    bf_task = asyncio.create_task(bf.run(asyncio.Event()))
    await asyncio.wait_for(bf_task, 30)
    assert bf.written == 0
    assert "rules fill their windows from live data instead" in caplog.text
