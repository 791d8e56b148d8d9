"""Outbox -> destinations: one :class:`~bot.notify.worker.Worker` per destination.

:class:`Delivery` builds the destinations of a config (python-telegram-bot's ``Bot`` for
Telegram, aiohttp for Discord webhooks), their pacers and the chart cache;
:func:`deliver_pending` drains the outbox once (``stressbot notify drain``, replay delivery)
and :class:`NotifierService` delivers until stopped (``stressbot run``, ``notify serve``).

Each destination reads the outbox through its own Redis consumer group, under a consumer name
of its own per process (``host:pid:random``), and delivers only while it holds the
destination's lease, so two or three notifier processes on one Redis deliver each alert once:
the others stand by and take over, with XAUTOCLAIM of the pending entries, when the lease of
the one delivering runs out (``notify.delivery.lease_ttl``). How an alert is sent, retried
over the ``retry_horizon``, parked, redelivered and marked "may repeat" is described in
:mod:`bot.notify.worker`; the Redis state in :mod:`bot.notify.ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from bot.core.errors import ConfigError
from bot.core.models import Alert
from bot.core.pacing import Pacer
from bot.core.retry import BackoffPolicy, sleep_or_stop
from bot.notify.base import (
    DeliveryReport,
    DrainDeadline,
    LeaseLost,
    Stopped,
    _Stop,
    accepts,
    entry_time,
    install_redaction,
)
from bot.notify.chart import ChartRenderer, render_chart
from bot.notify.config import NotifyConfig, NotifySettings
from bot.notify.discord import DiscordDestination
from bot.notify.ledger import Ledger, consumer_name
from bot.notify.retention import sweep
from bot.notify.telegram import TelegramClient, TelegramDestination, shared_pacing
from bot.notify.worker import REPEAT_NOTE, RETRY_NOTE, Worker
from bot.store.connection import is_outage, outage_reason

if TYPE_CHECKING:
    from bot.store.redis_store import Store

log = logging.getLogger(__name__)

#: The delivery loop restarts after a store outage / after a bug: 1 s doubling, capped.
STORE_RETRY = BackoffPolicy(initial=1.0, max=30.0)
LOOP_RETRY = BackoffPolicy(initial=1.0, max=60.0)

__all__ = [
    "REPEAT_NOTE",
    "RETRY_NOTE",
    "Delivery",
    "NotifierService",
    "accepts",
    "deliver_pending",
    "entry_time",
]


class Delivery:
    """The destinations of a config, their clients, pacers, chart cache and workers."""

    def __init__(
        self,
        config: NotifySettings,
        store: Store,
        *,
        renderer: ChartRenderer | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.cfg: NotifyConfig = config.notify
        self.store = store
        self.ledger = Ledger(store)
        self.consumer = consumer_name()
        self.zone = config.display.timezone
        self.clock: Callable[[], float] = clock or time.time
        self.renderer = renderer or render_chart
        self.session: aiohttp.ClientSession | None = None
        self.telegram: TelegramClient | None = None
        self.workers: list[Worker] = []
        self.unavailable: dict[str, str] = {}  # destination -> why it cannot be used now
        self._charts: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
        self._chart_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._upgraded = False

    async def __aenter__(self) -> Delivery:
        tg, dc = self.cfg.telegram, self.cfg.discord
        secrets: list[str] = []
        token = tg.token()
        if tg.chats and token is None:
            for chat in tg.chats:
                self.unavailable[chat.name] = f"no bot token: export {tg.token_env}"
            log.error(
                "notify.telegram.chats is set but the bot token is not (export %s): "
                "Telegram alerts stay in the outbox until it is (for "
                "notify.storage.outbox_retention)",
                tg.token_env,
            )
        if token:
            secrets.append(token)
            install_redaction(secrets)  # before any client exists that could log a URL
        self.session = aiohttp.ClientSession()
        try:
            if tg.chats and token:
                self.telegram = TelegramClient(
                    tg.api_base, token, self.cfg.delivery.request_timeout
                )
                pacing = shared_pacing(token, tg)
                for chat in tg.chats:
                    dest = TelegramDestination(
                        chat, self.telegram, self.zone, pacing, on_migrate=self._migrated(chat.name)
                    )
                    self.workers.append(Worker(self, dest, chat))
            dc_global = Pacer(dc.global_min_interval)
            for hook in dc.webhooks:
                gate = Pacer(
                    hook.min_interval if hook.min_interval is not None else dc.min_interval,
                    parent=dc_global,
                )
                try:
                    ddest = DiscordDestination(
                        hook,
                        self.session,
                        self.zone,
                        self.cfg.delivery.request_timeout,
                        gate,
                        dc_global,
                    )
                except ConfigError as e:
                    self.unavailable[hook.name] = str(e)
                    log.error(
                        "%s; its alerts stay in the outbox until it is set (for "
                        "notify.storage.outbox_retention)",
                        e,
                    )
                    continue
                secrets.append(ddest.secret)
                self.workers.append(Worker(self, ddest, hook))
        except BaseException:
            await self._close()
            raise
        install_redaction(secrets)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self.telegram is not None:
            with contextlib.suppress(Exception):
                await self.telegram.close()
            self.telegram = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def prepare(self, worker: Worker) -> None:
        """Per destination, when its worker starts (Redis is read here, not at start-up, so a
        store that is down is waited for like any other store outage)."""
        if not self._upgraded:
            names = [c.name for c in self.cfg.telegram.chats]
            names += [w.name for w in self.cfg.discord.webhooks]
            carried = await self.ledger.upgrade(names)
            if carried:
                log.warning("carried %d dead letter(s) of an older version over as parked", carried)
            self._upgraded = True
        dest = worker.sender
        if isinstance(dest, TelegramDestination):
            dest.follow(await self.ledger.chat_migrations())

    def _migrated(self, name: str) -> Callable[[int | str, int], Awaitable[None]]:
        async def record(old: int | str, new: int) -> None:
            await self.ledger.record_migration(old, new)
            log.warning(
                "%s: the Telegram group %s became the supergroup %s; alerts go there now "
                "(kept in Redis; set chat_id = %s in the config)",
                name,
                old,
                new,
                new,
            )

        return record

    async def chart(self, alert: Alert, zone: str) -> bytes | None:
        """The alert's chart, drawn once per (alert, zone); None if it cannot be drawn."""
        key = (alert.id, zone)
        if key in self._charts:
            return self._charts[key]
        lock = self._chart_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._charts:
                return self._charts[key]
            png = await self._draw(alert, zone)
            self._charts[key] = png
            while len(self._charts) > 64:
                old, _ = self._charts.popitem(last=False)
                self._chart_locks.pop(old, None)
            return png

    async def _draw(self, alert: Alert, zone: str) -> bytes | None:
        """Chart from the points the alert carries; from the store's recent series if none."""
        if not alert.symbols and not alert.chart:
            return None
        window = alert.window if alert.window > 0 else 6 * 3600.0
        try:
            series: dict[str, list[tuple[float, float]]]
            if any(len(p) >= 2 for p in alert.chart.values()):
                series = dict(alert.chart)
            else:
                series = {
                    s: await self.store.series(s, alert.ts - window, alert.ts + window * 0.25)
                    for s in alert.symbols
                }
            png = await asyncio.wait_for(
                asyncio.to_thread(self.renderer, alert, series, zone),
                self.cfg.delivery.chart_timeout,
            )
        except Exception as e:  # a failed chart never blocks the text
            log.warning(
                "chart for alert %s failed (%s: %s); sending text only",
                alert.id,
                type(e).__name__,
                e,
            )
            return None
        return png


async def deliver_pending(
    config: NotifySettings,
    store: Store,
    *,
    max_wait: float | None = None,
    renderer: ChartRenderer | None = None,
    clock: Callable[[], float] | None = None,
) -> DeliveryReport:
    """Deliver everything deliverable in the outbox to every destination, then return.

    Respects rate limits and retries; stops waiting after `max_wait` seconds (default
    ``notify.delivery.drain_timeout``), leaving what is left pending for the next run. Parked
    alerts are probed once and redelivered when their destination accepts messages again.
    `clock` (wall time) is what the retry horizon is measured on.
    """
    report = DeliveryReport()
    limit = config.notify.delivery.drain_timeout if max_wait is None else max_wait
    async with Delivery(config, store, renderer=renderer, clock=clock) as d:
        if not d.workers:
            log.info("no alert destinations configured ([notify] in the config)")
        stop = _Stop(None, time.monotonic() + limit)

        async def one(w: Worker) -> None:
            try:
                await w.run(stop, block_ms=None, stale_after=0.0)
            except DrainDeadline as e:
                log.warning("%s: delivery stopped: %s; the rest stays in the outbox", w.name, e)
            except LeaseLost as e:
                log.warning("%s: %s; the rest stays in the outbox", w.name, e)

        async with asyncio.TaskGroup() as tg:
            for w in d.workers:
                tg.create_task(one(w))
        for w in d.workers:
            w.report.deferred = await d.ledger.pending_count(w.name)
            report.destinations[w.name] = w.report
        report.unavailable = dict(d.unavailable)
    return report


class NotifierService:
    """Long-running delivery: one task per destination until `stop` is set."""

    def __init__(
        self,
        config: NotifySettings,
        store: Store,
        *,
        renderer: ChartRenderer | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.clock = clock
        self.report = DeliveryReport()

    async def run(self, stop: asyncio.Event) -> None:
        async with Delivery(self.config, self.store, renderer=self.renderer, clock=self.clock) as d:
            if not d.workers:
                log.info("no alert destinations configured; the notifier is idle")
            for w in d.workers:
                self.report.destinations[w.name] = w.report
            self.report.unavailable = dict(d.unavailable)
            tasks = [
                asyncio.create_task(self._serve(w, stop), name=f"notify:{w.name}")
                for w in d.workers
            ]
            housekeeping = asyncio.create_task(self._sweep(d, stop), name="notify:storage")
            try:
                await stop.wait()
                if tasks:  # a grace period for the requests out; then the rest is cancelled
                    await asyncio.wait(
                        tasks, timeout=self.config.notify.delivery.request_timeout + 2.0
                    )
            finally:
                for t in (*tasks, housekeeping):
                    t.cancel()
                await asyncio.gather(*tasks, housekeeping, return_exceptions=True)

    async def _sweep(self, d: Delivery, stop: asyncio.Event) -> None:
        """Every ``notify.storage.sweep_every``: trim the outbox, expire old delivery marks
        (:mod:`bot.notify.retention`) for every configured destination."""
        cfg = self.config.notify.storage
        dests = [r.name for r in self.config.notify.routes()]
        while not stop.is_set():
            try:
                await sweep(d.ledger, dests, retention=cfg.outbox_retention, mark_ttl=cfg.mark_ttl)
            except Exception as e:  # neither an outage nor a bug here stops delivery
                if is_outage(e):  # what an outage is: bot.store.connection.is_outage
                    log.warning(
                        "storage sweep: store unavailable (%s); trying again later",
                        outage_reason(e),
                    )
                else:
                    log.exception("storage sweep failed; trying again later")
            await sleep_or_stop(stop, cfg.sweep_every)

    async def _serve(self, w: Worker, stop: asyncio.Event) -> None:
        cfg = self.config.notify.delivery
        failures = 0
        while not stop.is_set():
            try:
                await w.run(_Stop(stop, None), block_ms=1000, stale_after=cfg.stale_after)
            except Stopped:
                return
            except LeaseLost as e:
                log.warning("%s: %s; standing by", w.name, e)
            except Exception as e:  # a bug must not silently end this destination's deliveries
                failures += 1
                if is_outage(e):  # what an outage is: bot.store.connection.is_outage
                    delay = STORE_RETRY.delay(failures)
                    log.warning(
                        "%s: store unavailable (%s); retrying in %.1fs",
                        w.name,
                        outage_reason(e),
                        delay,
                    )
                    await sleep_or_stop(stop, delay)
                    continue
                delay = LOOP_RETRY.delay(failures)
                log.exception(
                    "%s: delivery loop failed; restarting it in %.1fs (the alert in "
                    "hand stays pending)",
                    w.name,
                    delay,
                )
                await sleep_or_stop(stop, delay)
            else:
                failures = 0
