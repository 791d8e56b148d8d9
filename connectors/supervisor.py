"""The one entry point for live data: run every configured feed into the store.

    supervisor = FeedSupervisor(config.feeds, store)
    await supervisor.run(stop)        # until stop is set; cancels and awaits all its tasks

Each feed runs in its own task, so one feed's failure never stops another. Accepted ticks go
through the combiner (for symbols with several sources) to the batching writer, which writes
them with `Store.add_ticks` (optionally conflated to one tick per symbol per `conflate`
interval, so a busy market does not flood the engine). Health records go to
`Store.set_feed_status` on every state change and every `status_interval`.

A Redis outage stops nothing here: the writer keeps the ticks it cannot write in a bounded
buffer (``feeds.max_buffer``; the oldest are dropped and counted past it) and retries with
backoff; each health record carries the writer's state (``writer``: buffered, dropped on
overflow, the last store error) so `stressbot feeds` shows it once Redis is back, and the
status loop simply tries again at its next interval.

Fallbacks: a symbol with several feeds is combined (``[feeds.combine]``, else failover in the
order the feeds are configured); a feed whose health is down or stale (a source refused from
this location included) stops counting at once, so the next source of the symbol takes over.
Each health record says which symbols the feed serves now (``serving``) and which it stands
by for (``standby``): :meth:`FeedSupervisor.update_serving`, read by `stressbot feeds`.

Which class serves a config `kind` is the registry :data:`FEED_CLASSES` (``kind ->
"module:Class"``, resolved by :func:`feed_class` when a feed of that kind is built).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from bot.core.models import Tick
from bot.core.retry import sleep_or_stop
from bot.store.redis_store import Store
from connectors.base import Feed, FeedContext, FeedSetupError
from connectors.combine import Combiner
from connectors.config import CombineConfig, FeedConfig, FeedsConfig
from connectors.health import FeedHealth
from connectors.market_hours import MarketHours
from connectors.writer import TickWriter

log = logging.getLogger(__name__)


#: config `kind` -> ``"module:Class"`` of the feed that serves it. A module is imported only
#: when a feed of its kind is built (ccxt, in particular, is heavy to import).
FEED_CLASSES: Final[Mapping[str, str]] = {
    "kraken": "connectors.feeds.kraken:KrakenFeed",
    "ccxt": "connectors.feeds.ccxt_pro:CcxtFeed",
    "oanda": "connectors.feeds.oanda:OandaFeed",
    "nyfed": "connectors.feeds.nyfed:NyFedFeed",
    "fred": "connectors.feeds.fred:FredFeed",
    "fred_csv": "connectors.feeds.fred:FredCsvFeed",
    "board_ddp": "connectors.feeds.board_ddp:BoardDdpFeed",
    "treasury": "connectors.feeds.treasury:TreasuryFeed",
    "yahoo": "connectors.feeds.yahoo:YahooFeed",
}


def feed_class(kind: str) -> type[Feed[Any]]:
    """The feed class registered for config `kind` (its module is imported now)."""
    target = FEED_CLASSES.get(kind)
    if target is None:
        raise FeedSetupError(
            f"unknown feed kind {kind!r}; choices: {', '.join(sorted(FEED_CLASSES))}"
        )
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Feed)):
        raise FeedSetupError(f"feed kind {kind!r}: {target} is not a Feed class")
    return cls


def build_feed(name: str, cfg: FeedConfig, ctx: FeedContext) -> Feed[Any]:
    """The connector for one `[feeds.sources.<name>]` table."""
    try:
        cls = feed_class(cfg.kind)
    except FeedSetupError as e:
        raise FeedSetupError(f"feed {name}: {e}") from None
    return cls(name, cfg, ctx)


class FeedSupervisor:
    """Runs all enabled feeds of `config` into `store` until stopped."""

    def __init__(
        self, config: FeedsConfig, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._status_changed = asyncio.Event()
        self.writer = TickWriter(
            store,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            max_buffer=config.max_buffer,
        )
        self.ctx = FeedContext(
            feeds=config,
            sink=self._route,
            market=MarketHours(config.market_hours),
            clock=clock,
            on_health_change=self._on_health_change,
        )
        self.feeds: dict[str, Feed[Any]] = {}
        for name, fc in config.enabled_sources().items():
            self.feeds[name] = build_feed(name, fc, self.ctx)
        self.combiners: dict[str, Combiner] = self._build_combiners()
        self.conflate = config.conflate
        self.conflated = 0  # ticks replaced by a newer one within the conflation interval
        self._written_at: dict[str, float] = {}  # symbol -> wall time of its last write
        self._held: dict[str, Tick] = {}

    def _build_combiners(self) -> dict[str, Combiner]:
        by_symbol: dict[str, list[str]] = {}
        for name, feed in self.feeds.items():
            for canonical in dict.fromkeys(feed.symbols.values()):
                by_symbol.setdefault(canonical, []).append(name)
        out: dict[str, Combiner] = {}
        for sym, names in by_symbol.items():
            cc = self.config.combine.get(sym)
            if cc is None:
                if len(names) < 2:
                    continue
                cc = CombineConfig(mode="failover", sources=names)  # declaration order
            sources = [s for s in (cc.sources or names) if s in self.feeds]
            out[sym] = Combiner(sym, cc, sources, self._clock, self._healthy)
        return out

    def _healthy(self, feed: str) -> bool:
        f = self.feeds.get(feed)
        return f is not None and f.health.state in ("ok", "closed")

    def update_serving(self) -> None:
        """Put into each feed's health which symbols it serves now and which it stands by for."""
        now = self._clock()
        serving: dict[str, list[str]] = {n: [] for n in self.feeds}
        standby: dict[str, list[str]] = {n: [] for n in self.feeds}
        for name, feed in self.feeds.items():
            gone = {feed.symbols[v] for v in feed.skipped if v in feed.symbols}
            for sym in dict.fromkeys(feed.symbols.values()):
                if sym in gone:
                    continue
                comb = self.combiners.get(sym)
                if comb is None:
                    if feed.health.state in ("ok", "closed", "stale"):
                        serving[name].append(sym)
                elif name in comb.serving(now):
                    serving[name].append(sym)
                elif name in comb.sources and self._healthy(name):
                    standby[name].append(sym)
        for name, feed in self.feeds.items():
            feed.health.serving = serving[name]
            feed.health.standby = standby[name]

    def serving_by_symbol(self) -> dict[str, list[str]]:
        """Canonical symbol -> the feeds serving it now (empty: no source is live)."""
        self.update_serving()
        out: dict[str, list[str]] = {}
        for name, feed in self.feeds.items():
            for sym in dict.fromkeys(feed.symbols.values()):
                out.setdefault(sym, [])
                if sym in feed.health.serving:
                    out[sym].append(name)
        return out

    def _route(self, feed: str, symbol: str, ts: float, value: float) -> None:
        comb = self.combiners.get(symbol)
        if comb is None:
            tick: Tick | None = Tick(ts, symbol, value, feed)
        else:
            tick = comb.update(feed, ts, value, self._clock())
        if tick is None:
            return
        if not self.conflate:
            self.writer.put(tick)
            return
        now = self._clock()
        last = self._written_at.get(symbol)
        if last is None or now - last >= self.conflate:
            self._written_at[symbol] = now
            if self._held.pop(symbol, None) is not None:
                self.conflated += 1
            self.writer.put(tick)
        else:
            if symbol in self._held:
                self.conflated += 1
            self._held[symbol] = tick

    def _release_held(self, force: bool = False) -> None:
        now = self._clock()
        for symbol, tick in list(self._held.items()):
            if force or now - self._written_at.get(symbol, 0.0) >= self.conflate:
                del self._held[symbol]
                self._written_at[symbol] = now
                self.writer.put(tick)

    async def _conflation_loop(self, stop: asyncio.Event) -> None:
        period = max(self.conflate / 4, 0.001)
        while not stop.is_set():
            await sleep_or_stop(stop, period)
            self._release_held()

    def _on_health_change(self, _health: FeedHealth) -> None:
        self._status_changed.set()

    def statuses(self) -> dict[str, dict[str, object]]:
        """The current health record of every running feed (what is written to Redis)."""
        self.update_serving()
        return {name: self._record(f) for name, f in self.feeds.items()}

    def _record(self, feed: Feed[Any]) -> dict[str, object]:
        rec = feed.health.record()
        w = self.writer
        rec["writer"] = {
            "buffered": w.pending,
            "overflow": w.overflow,
            "errors": w.errors,
            "last_error": w.last_error,
            "max_buffer": w.max_buffer,
        }
        return rec

    async def run(self, stop: asyncio.Event) -> None:
        """Run every feed until `stop` is set; then cancel and await all tasks, flush ticks."""
        if not self.config.enabled or not self.feeds:
            log.info("feeds: none enabled")
            await stop.wait()
            return
        log.info("feeds: starting %s", ", ".join(self.feeds))
        feed_stop = asyncio.Event()
        writer_stop = asyncio.Event()
        writer = asyncio.create_task(self.writer.run(writer_stop), name="feeds:writer")
        status = asyncio.create_task(self._status_loop(feed_stop), name="feeds:status")
        helpers = [status]
        if self.conflate:
            helpers.append(
                asyncio.create_task(self._conflation_loop(feed_stop), name="feeds:conflate")
            )
        tasks = [
            asyncio.create_task(self._run_feed(f, feed_stop), name=f"feeds:{n}")
            for n, f in self.feeds.items()
        ]
        try:
            await stop.wait()
        finally:
            feed_stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._release_held(force=True)
            writer_stop.set()  # feeds are done: flush what they accepted
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 15.0)
            for h in helpers:
                h.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(*helpers)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write_statuses(), 5.0)
            log.info("feeds: stopped (%d ticks written)", self.writer.written)

    async def _run_feed(self, feed: Feed[Any], stop: asyncio.Event) -> None:
        try:
            await feed.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("feed %s crashed", feed.name)
            feed.health.errors += 1
            feed.health.set_state("down", f"internal error: {type(e).__name__}: {e}"[:300])

    async def _status_loop(self, stop: asyncio.Event) -> None:
        interval = self.config.status_interval
        while not stop.is_set():
            self._status_changed.clear()
            try:
                await asyncio.wait_for(self._write_statuses(), 5.0)
            except (OSError, TimeoutError, Exception) as e:
                log.warning("feeds: cannot write feed status: %s: %s", type(e).__name__, e)
            await sleep_or_stop(self._status_changed, interval)

    async def _write_statuses(self) -> None:
        self.update_serving()
        for name, f in self.feeds.items():
            await self.store.set_feed_status(name, self._record(f))
