"""First-start backfill: recent public history into the tick stream, from local servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.store.redis_store import Store
from connectors.config import BackfillConfig
from connectors.history.backfill import SOURCE, Backfill
from tests.fake_history_servers import FakeServer
from tests.fake_history_sources import Episode, FakeFrb, FakeYahoo

NOW = datetime(2024, 6, 20, 18, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def recent(tmp_path: Path) -> Episode:
    """Three weeks of daily S&P 500 closes and IORB, ending the day before NOW."""
    lines = ["ts,symbol,value"]
    d = date(2024, 5, 28)
    while d < date(2024, 6, 20):
        if d.weekday() < 5:
            lines.append(f"{d}T20:00:00Z,SPX,{5200 + d.day}")
        lines.append(f"{d}T04:00:00Z,IORB,5.4")
        d += timedelta(days=1)
    path = tmp_path / "recent.csv"
    path.write_text("\n".join(lines) + "\n")
    return Episode(path)


@pytest.fixture
async def servers(recent: Episode) -> AsyncIterator[tuple[FakeYahoo, FakeFrb]]:
    yahoo, frb = FakeYahoo(recent), FakeFrb(recent)
    started: list[FakeServer] = []
    try:
        for s in (yahoo, frb):
            await s.start()
            started.append(s)
        yield yahoo, frb
    finally:
        for s in started:
            await s.stop()


async def test_backfill_writes_recent_history_in_time_order(
    store: Store, servers: tuple[FakeYahoo, FakeFrb], tmp_path: Path
) -> None:
    yahoo, frb = servers
    cfg = BackfillConfig(days=10, symbols=["SPX", "IORB"])
    urls = {"yahoo": yahoo.url, "frb": frb.endpoint}
    bf = Backfill(
        cfg, store, clock=lambda: NOW, source_urls=urls, cache_dir=tmp_path, min_interval=0
    )
    await bf.run(asyncio.Event())
    ticks = [t for _, t in await store.read_ticks("0-0", count=1000)]
    assert bf.written == len(ticks) > 0
    assert {t.symbol for t in ticks} == {"SPX", "IORB"}
    assert all(t.source == SOURCE and t.ts <= NOW for t in ticks)
    assert [t.ts for t in ticks if t.symbol == "SPX"] == sorted(
        t.ts for t in ticks if t.symbol == "SPX"
    )
    spx_days = {datetime.fromtimestamp(t.ts, UTC).date() for t in ticks if t.symbol == "SPX"}
    assert len(spx_days) >= 6  # about two weeks of weekday closes
    assert not bf.failed


async def test_backfill_gives_up_quietly_when_the_source_is_down(
    store: Store,
    servers: tuple[FakeYahoo, FakeFrb],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    yahoo, _frb = servers
    yahoo.fail_next(503, times=1000)  # 503 every time: the download keeps retrying with backoff
    cfg = BackfillConfig(days=5, symbols=["SPX"], timeout=1.0)
    bf = Backfill(
        cfg, store, clock=lambda: NOW, source_urls={"yahoo": yahoo.url}, cache_dir=tmp_path
    )
    await asyncio.wait_for(bf.run(asyncio.Event()), 30)
    assert bf.written == 0
    assert "from live data instead" in caplog.text


async def test_a_refusing_source_is_reported_and_the_others_are_written(
    store: Store,
    servers: tuple[FakeYahoo, FakeFrb],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    yahoo, frb = servers
    yahoo.fail_next(429, {"Retry-After": "3600"})  # longer than the downloader waits
    cfg = BackfillConfig(days=10, symbols=["SPX", "IORB"])
    urls = {"yahoo": yahoo.url, "frb": frb.endpoint, "dukascopy": "http://127.0.0.1:9"}
    bf = Backfill(
        cfg, store, clock=lambda: NOW, source_urls=urls, cache_dir=tmp_path, min_interval=0
    )
    with caplog.at_level("INFO", logger="connectors.history.backfill"):
        await asyncio.wait_for(bf.run(asyncio.Event()), 30)
    ticks = [t for _, t in await store.read_ticks("0-0", count=1000)]
    assert {t.symbol for t in ticks} == {"IORB"}
    assert "3600" in bf.failed["yahoo"] and "dukascopy" in bf.failed  # SPX's fallback is down
    assert "per source" in caplog.text and "FAILED" in caplog.text
