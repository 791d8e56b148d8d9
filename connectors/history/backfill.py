"""First-start warm-up: recent public history into the tick stream.

A bot started for the first time has empty windows: a rule on 5-day returns would be blind
for five days. On a first start (no engine checkpoint) this fetches the last few days from the
keyless sources of `stressbot history download` and writes them to the tick stream like any
ticks. The engine treats everything before its first start as history: it warms the windows
and raises no alerts. Live ticks are not held up; history arriving after them is put in time
order by the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.models import Tick
from bot.store.redis_store import Store
from connectors.config import BackfillConfig
from connectors.history.common import DOWNLOAD_ERRORS
from connectors.history.download import DownloadOptions, download

log = logging.getLogger(__name__)

SOURCE = "backfill"


class Backfill:
    def __init__(
        self, config: BackfillConfig, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self.written = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and write the history once; give up quietly (logged) when offline or stopped."""
        if self.config.days <= 0:
            return
        fetch = asyncio.create_task(self._fetch(), name="backfill:download")
        stopped = asyncio.create_task(stop.wait(), name="backfill:stop")
        try:
            done, _ = await asyncio.wait(
                {fetch, stopped}, timeout=self.config.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if fetch not in done:
                log.warning(
                    "backfill: %s; rules fill their windows from live data instead",
                    "stopped" if stopped in done else "timed out",
                )
        finally:
            for t in (fetch, stopped):
                t.cancel()
            for t in (fetch, stopped):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _fetch(self) -> None:
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        opts = DownloadOptions(
            start=today - timedelta(days=self.config.days),
            end=today,
            symbols=self.config.symbols or None,
            fred_url=self.config.fred_url,
            exchange_urls=self.config.exchange_urls,
            progress=lambda m: log.debug("backfill: %s", m),
        )
        log.info("backfill: first start, fetching %d days of public history", self.config.days)
        try:
            result = await download(opts)
        except DOWNLOAD_ERRORS as e:
            log.warning("backfill: %s; rules fill their windows from live data instead", e)
            return
        now = self._clock()
        ticks = sorted(
            (Tick(r.ts, r.symbol, r.value, SOURCE) for r in result.rows if r.ts <= now),
            key=lambda t: t.ts,
        )
        await self.store.add_ticks(ticks)
        self.written = len(ticks)
        log.info(
            "backfill: wrote %d historical ticks (%s)",
            len(ticks),
            ", ".join(sorted({t.symbol for t in ticks})) or "none",
        )
