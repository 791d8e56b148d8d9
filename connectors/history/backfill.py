"""First-start warm-up: recent public history into the tick stream.

A bot started for the first time has empty windows: a rule on 5-day returns would be blind
for five days. On a first start (no engine checkpoint) this fetches the last few days from the
keyless sources of `stressbot history download` (each symbol from the first of its sources
that answers, :mod:`connectors.history.sources`) and writes them to the tick stream like any
ticks. The engine treats everything before its first start as history: it warms the windows
and raises no alerts. Live ticks are not held up; history arriving after them is put in time
order by the engine.

One source failing costs only its own symbols, and only until their next source answers: each
symbol's rows are written as soon as a source has served them, so a source that is down, or the
time limit (``[feeds.backfill] timeout``), leaves everything else written. The run ends with a
per-source table in the log (rows, chunks from the cache and fetched, what failed and why).

``[feeds.backfill] exchange_urls`` maps a source name (``treasury``, ``nyfed``, ``frb``,
``ecb``, ``dukascopy``, ``yahoo``, ...) or a ccxt exchange id to a base URL (mirrors,
proxies); ``fred_url`` is the base URL of the opt-in keyless FRED CSV.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.core.models import Tick
from bot.store.redis_store import Store
from connectors.config import BackfillConfig
from connectors.history.common import DEFAULT_MIN_INTERVAL, DOWNLOAD_ERRORS, SymbolResult
from connectors.history.download import DownloadOptions, download, source_table

log = logging.getLogger(__name__)

SOURCE = "backfill"


class Backfill:
    def __init__(
        self,
        config: BackfillConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        source_urls: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._source_urls = dict(source_urls or {})
        self._cache_dir = cache_dir
        self._min_interval = min_interval
        self.written = 0
        self.symbols: set[str] = set()
        self.failed: dict[str, str] = {}  # source -> why

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
                    "backfill: %s after %d historical ticks (%s); rules fill the rest of their "
                    "windows from live data instead",
                    "stopped" if stopped in done else "timed out",
                    self.written,
                    ", ".join(sorted(self.symbols)) or "none",
                )
        finally:
            for t in (fetch, stopped):
                t.cancel()
            for t in (fetch, stopped):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _write(self, res: SymbolResult) -> None:
        now = self._clock()
        ticks = sorted(
            (Tick(r.ts, r.symbol, r.value, SOURCE) for r in res.rows if r.ts <= now),
            key=lambda t: t.ts,
        )
        if ticks:
            await self.store.add_ticks(ticks)
            self.written += len(ticks)
            self.symbols.add(res.symbol)

    async def _fetch(self) -> None:
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        opts = DownloadOptions(
            start=today - timedelta(days=self.config.days),
            end=today,
            symbols=self.config.symbols or None,
            cache_dir=self._cache_dir,
            source_urls={**self.config.exchange_urls, **self._source_urls},
            fred_url=self.config.fred_url,
            progress=lambda m: log.debug("backfill: %s", m),
            on_result=self._write,
            min_interval=self._min_interval,
            clock=self._clock(),
        )
        log.info("backfill: first start, fetching %d days of public history", self.config.days)
        try:
            result = await download(opts)
        except DOWNLOAD_ERRORS as e:  # the request itself (a symbol without a source)
            log.warning("backfill: %s; rules fill their windows from live data instead", e)
            return
        for r in result.reports:
            if r.error is not None:
                self.failed[r.source] = r.error
                log.warning("backfill: source %s failed: %s", r.source, r.error)
        log.info("backfill: per source:\n%s", source_table(result.reports))
        if result.missing:
            log.warning(
                "backfill: no history for %s; their rules fill their windows from live data",
                ", ".join(result.missing),
            )
        log.info(
            "backfill: wrote %d historical ticks (%s)",
            self.written,
            ", ".join(sorted(self.symbols)) or "none",
        )
