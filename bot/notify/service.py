"""Outbox -> destinations: routing, pacing, retries, dead letters and exactly-once marks.

Each destination (Telegram chat or Discord webhook) reads the outbox through its own Redis
consumer group, one alert at a time in outbox order. Per alert:

1. If the delivery mark for (destination, alert id) says sent or dead, acknowledge and move on
   (a re-read pending entry, or the same alert id written twice to the outbox).
2. If it is not routed here, muted or stale, acknowledge (and log) without sending.
3. Render its parts (text, then chart), then for each part not yet accepted: write the
   in-flight mark, send, and on acceptance write the part mark; the final part's mark is in
   the same MULTI/EXEC as the XACK.

After a crash, the consumer's pending entries are processed first and step 1 or the part marks
skip what was already accepted. The one window left: the destination accepted a part but the
process died before the mark was written (one network round trip plus one Redis round trip).
The in-flight mark makes that case visible: such a part is sent again with a note saying it
may repeat, instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.core.errors import ConfigError
from bot.core.models import Alert, AlertKind
from bot.core.pacing import Pacer
from bot.core.retry import BackoffPolicy
from bot.notify.base import (
    AttachmentRejected,
    DeliveryError,
    DeliveryReport,
    DestinationReport,
    DrainDeadline,
    FormattingRejected,
    Part,
    PermanentError,
    RateLimited,
    Sender,
    TransientError,
    install_redaction,
)
from bot.notify.chart import ChartRenderer, render_chart
from bot.notify.config import NotifyConfig, NotifySettings, Route
from bot.notify.discord import DiscordDestination
from bot.notify.ledger import ALL, Ledger
from bot.notify.telegram import TelegramClient, TelegramDestination

if TYPE_CHECKING:
    from bot.store.redis_store import Store

log = logging.getLogger(__name__)

CONSUMER = "notifier"  # one stable consumer per group: a restart finds its own pending entries
REPEAT_NOTE = "Resent after a restart: this may repeat an earlier message."
_READ_COUNT = 50
#: The delivery loop restarts after a store outage / after a bug: 1 s doubling, capped.
STORE_RETRY = BackoffPolicy(initial=1.0, max=30.0)
LOOP_RETRY = BackoffPolicy(initial=1.0, max=60.0)


class Stopped(DeliveryError):
    """The service is stopping; the alert in hand stays pending."""


def accepts(route: Route, alert: Alert) -> bool:
    """Whether `route` wants `alert` (severity, pattern, rule, resolved messages)."""
    if alert.kind is AlertKind.RESOLVED and not route.resolved:
        return False
    if alert.severity.lower() not in route.severities:
        return False
    if route.patterns and alert.pattern not in route.patterns:
        return False
    return not (route.rules and alert.rule not in route.rules)


def entry_time(entry_id: str) -> float:
    """The wall-clock time Redis assigned to an outbox entry id ("ms-seq")."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000.0
    except ValueError:
        return time.time()


@dataclass(slots=True)
class _Stop:
    event: asyncio.Event | None
    deadline: float | None  # monotonic

    def check(self, wait: float = 0.0) -> None:
        if self.event is not None and self.event.is_set():
            raise Stopped("stopping")
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise DrainDeadline(f"would wait {wait:.1f}s past the drain deadline")

    async def sleep(self, seconds: float) -> None:
        self.check(seconds)
        if self.event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        self.check()


class Worker:
    """Delivers the outbox to one destination."""

    def __init__(
        self, delivery: Delivery, sender: Sender, route: Route, gate: Pacer, global_gate: Pacer
    ) -> None:
        self.d = delivery
        self.sender = sender
        self.route = route
        self.name = route.name
        self.group = delivery.ledger.group(route.name)
        self.gate = gate
        self.global_gate = global_gate
        self.report = DestinationReport()

    async def drain(self, stop: _Stop, *, block_ms: int | None, stale_after: float) -> None:
        """Pending entries first, then new ones until none is left (block_ms None) or stop."""
        await self.d.store.ensure_group(self.group)
        while True:
            entries = await self.d.store.read_group(
                self.group, CONSUMER, count=_READ_COUNT, pending=True
            )
            if not entries:
                break
            for eid, alert in entries:
                await self.process(eid, alert, stop, stale_after)
        while True:
            stop.check()
            entries = await self.d.store.read_group(
                self.group, CONSUMER, count=_READ_COUNT, block_ms=block_ms
            )
            if not entries:
                if block_ms is None:
                    return
                continue
            for eid, alert in entries:
                await self.process(eid, alert, stop, stale_after)

    async def process(self, entry_id: str, alert: Alert, stop: _Stop, stale_after: float) -> None:
        ledger, r = self.d.ledger, self.report
        mark, inflight, mutes = await ledger.lookup(self.name, alert.id)
        if mark is not None and mark.status in ("sent", "dead"):
            await ledger.ack_only(self.name, entry_id)
            r.already_delivered += 1
            return
        if not accepts(self.route, alert):
            await ledger.ack_only(self.name, entry_id)
            r.skipped += 1
            return
        if mark is None:
            hits = [mutes[t] for t in (alert.rule, ALL) if t in mutes]
            if hits:
                until = max(hits)
                log.info(
                    "%s: alert %s (rule %s) muted until %s, not sent",
                    self.name,
                    alert.id,
                    alert.rule,
                    time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(until)),
                )
                await ledger.ack_only(self.name, entry_id)
                r.muted += 1
                return
            if stale_after > 0 and time.time() - alert.ts > stale_after:
                log.info(
                    "%s: alert %s is older than %.0fs, acknowledged without sending",
                    self.name,
                    alert.id,
                    stale_after,
                )
                await ledger.ack_only(self.name, entry_id)
                r.stale += 1
                return
        start = mark.parts if mark is not None else 0
        ids = list(mark.ids) if mark is not None else []
        note = None
        if inflight == f"{alert.id}#{start}":
            log.warning(
                "%s: alert %s part %d was in flight when the process stopped; sending "
                "it again, marked as a possible repeat",
                self.name,
                alert.id,
                start,
            )
            note = REPEAT_NOTE
        chart = await self.d.chart(alert, self.sender_zone) if self.route.charts else None
        parts = self.sender.render(alert, chart, note)
        try:
            if start >= len(parts):  # rendered shorter than last time (e.g. chart failed now)
                await ledger.record_part(
                    self.name, alert.id, start, ids, final=True, entry_id=entry_id
                )
            for i in range(start, len(parts)):
                await ledger.set_inflight(self.name, alert.id, i)
                ids.append(await self.send_part(parts[i], stop))
                await ledger.record_part(
                    self.name, alert.id, i + 1, ids, final=i == len(parts) - 1, entry_id=entry_id
                )
        except (PermanentError, TransientError, FormattingRejected, AttachmentRejected) as e:
            log.error(
                "%s: alert %s kept as a dead letter after %s: %s",
                self.name,
                alert.id,
                type(e).__name__,
                e,
            )
            await ledger.dead_letter(self.name, entry_id, alert, str(e))
            r.dead += 1
            return
        r.delivered += 1
        r.latencies.append(time.time() - entry_time(entry_id))

    @property
    def sender_zone(self) -> str:
        return self.route.timezone or self.d.zone

    async def send_part(self, part: Part, stop: _Stop) -> str:
        cfg = self.d.cfg.delivery
        plain = False
        attempt = 0
        while True:
            stop.check(self.gate.ready_in())
            await self.gate.wait()
            try:
                mid = await self.sender.send(part, plain=plain)
                self.report.messages += 1
                return mid
            except RateLimited as e:
                self.report.rate_limited += 1
                (self.global_gate if e.global_ else self.gate).pause(e.retry_after)
                log.warning("%s: %s", self.name, e)
            except FormattingRejected as e:
                if plain:
                    raise
                log.warning("%s: formatting rejected (%s); sending plain text", self.name, e)
                plain = True
                self.report.fallbacks += 1
            except AttachmentRejected as e:
                if part.photo is None:
                    raise
                log.warning("%s: chart rejected (%s); sending the text alone", self.name, e)
                embed = dict(part.embed) if part.embed is not None else None
                if embed is not None:
                    embed.pop("image", None)
                part = Part(part.text, part.plain, photo=None, embed=embed)
                self.report.fallbacks += 1
            except TransientError as e:
                attempt += 1
                if attempt >= cfg.max_attempts:
                    raise
                self.report.retries += 1
                delay = BackoffPolicy(initial=cfg.backoff_base, max=cfg.backoff_max).delay(attempt)
                log.warning("%s: %s; retry %d in %.1fs", self.name, e, attempt, delay)
                await stop.sleep(delay)


class Delivery:
    """The destinations of a config, their HTTP session, gates, chart cache and workers."""

    def __init__(
        self, config: NotifySettings, store: Store, *, renderer: ChartRenderer | None = None
    ) -> None:
        self.config = config
        self.cfg: NotifyConfig = config.notify
        self.store = store
        self.ledger = Ledger(store)
        self.zone = config.display.timezone
        self.renderer = renderer or render_chart
        self.session: aiohttp.ClientSession | None = None
        self.workers: list[Worker] = []
        self.unavailable: dict[str, str] = {}  # destination -> why it cannot be used now
        self._charts: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
        self._chart_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __aenter__(self) -> Delivery:
        tg, dc = self.cfg.telegram, self.cfg.discord
        secrets: list[str] = []
        token = tg.token()
        if tg.chats and token is None:
            for chat in tg.chats:
                self.unavailable[chat.name] = f"no bot token: export {tg.token_env}"
            log.error(
                "notify.telegram.chats is set but the bot token is not (export %s): "
                "Telegram alerts stay in the outbox until it is",
                tg.token_env,
            )
        if token:
            secrets.append(token)
        self.session = aiohttp.ClientSession()
        try:
            if tg.chats and token:
                client = TelegramClient(
                    self.session, tg.api_base, token, self.cfg.delivery.request_timeout
                )
                tg_global = Pacer(tg.global_min_interval)
                for chat in tg.chats:
                    gate = Pacer(
                        chat.min_interval if chat.min_interval is not None else tg.min_interval,
                        parent=tg_global,
                    )
                    dest = TelegramDestination(chat, client, self.zone)
                    self.workers.append(Worker(self, dest, chat, gate, tg_global))
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
                    log.error("%s; its alerts stay in the outbox until it is set", e)
                    continue
                secrets.append(ddest.secret)
                self.workers.append(Worker(self, ddest, hook, gate, dc_global))
        except BaseException:
            await self.session.close()
            raise
        install_redaction(secrets)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

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
) -> DeliveryReport:
    """Deliver everything deliverable in the outbox to every destination, then return.

    Respects rate limits and retries; stops waiting after `max_wait` seconds (default
    ``notify.delivery.drain_timeout``), leaving what is left pending for the next run.
    """
    report = DeliveryReport()
    limit = config.notify.delivery.drain_timeout if max_wait is None else max_wait
    async with Delivery(config, store, renderer=renderer) as d:
        if not d.workers:
            log.info("no alert destinations configured ([notify] in the config)")
        stop = _Stop(None, time.monotonic() + limit)

        async def one(w: Worker) -> None:
            try:
                await w.drain(stop, block_ms=None, stale_after=0.0)
            except DrainDeadline as e:
                log.warning("%s: delivery stopped: %s; the rest stays in the outbox", w.name, e)

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
        self, config: NotifySettings, store: Store, *, renderer: ChartRenderer | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.report = DeliveryReport()

    async def run(self, stop: asyncio.Event) -> None:
        async with Delivery(self.config, self.store, renderer=self.renderer) as d:
            if not d.workers:
                log.info("no alert destinations configured; the notifier is idle")
            for w in d.workers:
                self.report.destinations[w.name] = w.report
            self.report.unavailable = dict(d.unavailable)
            tasks = [
                asyncio.create_task(self._serve(w, stop), name=f"notify:{w.name}")
                for w in d.workers
            ]
            try:
                await stop.wait()
                grace = self.config.notify.delivery.request_timeout + 2.0
                _done, still = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
                for t in still:
                    t.cancel()
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, w: Worker, stop: asyncio.Event) -> None:
        cfg = self.config.notify.delivery
        failures = 0
        while not stop.is_set():
            try:
                await w.drain(_Stop(stop, None), block_ms=1000, stale_after=cfg.stale_after)
            except Stopped:
                return
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                failures += 1
                delay = STORE_RETRY.delay(failures)
                log.warning("%s: store unavailable (%s); retrying in %.1fs", w.name, e, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            except Exception:  # a bug must not silently end this destination's deliveries
                failures += 1
                delay = LOOP_RETRY.delay(failures)
                log.exception(
                    "%s: delivery loop failed; restarting it in %.1fs (the alert in "
                    "hand stays pending)",
                    w.name,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            else:
                failures = 0
