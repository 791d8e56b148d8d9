"""Watching the watcher: Prometheus metrics, liveness and readiness over HTTP.

    GET /metrics   Prometheus text format (prometheus_client's exposition)
    GET /healthz   200 while the process answers (liveness)
    GET /readyz    200 ("ready (leader)", "ready (standby)") when this process can do its job:
                   Redis answers, its engine holds the engine lease or stands by behind an
                   engine that does, and, if feeds are configured, at least one feed is ok;
                   503 with the reason otherwise

Most figures are read from the store at scrape time (:mod:`bot.runtime.snapshot`, shared with
`stressbot status`), like an exporter, so they say what the whole deployment wrote there
(feeds, engine, outbox, parked alerts), whichever process wrote it, and a scrape never races
the hot paths. A feed whose last report is older than three status intervals is reported as
``stale_report`` (its process is gone) and serves no symbol.

What the store does not hold comes from this process (:class:`Local`): its engine's role
(``stressbot_engine_role``), the rule evaluations while it leads, the alerts it committed by
rule and kind, its notifier's deliveries, messages, retries, 429s and parkings per
destination, and its Telegram command bot's calls and 429s. These are counters of the
process: they start at zero with it, which Prometheus's ``rate()`` and ``increase()`` handle
as a counter reset.

prometheus_client (0.2x) is used as its docs describe for proxied figures ("Custom
Collectors", prometheus.github.io/client_python/collector/custom): a ``Collector`` whose
``collect()`` yields ``GaugeMetricFamily`` / ``CounterMetricFamily``, registered in a
``CollectorRegistry`` of our own (not the global one), rendered by ``generate_latest``.
Counter families are named without ``_total``; the library appends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot import __version__
from bot.engine.engine import Engine
from bot.notify.base import DeliveryReport
from bot.runtime.leader import EngineLease
from bot.runtime.snapshot import Snapshot, feed_state, read_snapshot
from bot.store.redis_store import Store
from bot.telegram.limiter import PacedRateLimiter

log = logging.getLogger(__name__)

FEED_STATES = ("starting", "ok", "stale", "down", "closed")
RULE_STATES = ("inactive", "pending", "firing")
ROLES = ("leader", "standby", "none")

__all__ = ["Local", "MetricsServer", "Snapshot", "engine_role", "read_snapshot", "render"]


class EngineView(Protocol):
    """What the metrics read of this process's engine service (`bot.runtime.live`)."""

    lease: EngineLease
    engine: Engine
    committed: Counter[tuple[str, str]]  # alerts committed to the outbox, by (rule, kind)


class CommandsView(Protocol):
    """What the metrics read of this process's Telegram command bot."""

    limiter: PacedRateLimiter | None


class NotifierView(Protocol):
    """What the metrics read of this process's notifier service (`bot.notify.service`)."""

    report: DeliveryReport


@dataclass
class Local:
    """What only this process knows: its engine's role and counters, its notifier's counters
    (counters of a process start at zero with it, as Prometheus counters do)."""

    engine: EngineView | None = None
    notifier: NotifierView | None = None
    commands: CommandsView | None = None


def engine_role(lease: EngineLease) -> str:
    """``leader`` while this engine holds an unexpired lease, ``standby`` while it waits for
    the lease another engine holds, else ``none`` (starting, or its lease ran out)."""
    if lease.value is not None:
        fresh = not lease.lost.is_set() and time.monotonic() <= lease.valid_until
        return "leader" if fresh else "none"
    return "standby" if lease.holder is not None else "none"


class SnapshotCollector(Collector):
    """Prometheus families of one snapshot and of this process's own figures."""

    def __init__(self, snap: Snapshot, status_interval: float, local: Local | None = None):
        self.snap = snap
        self.status_interval = status_interval
        self.local = local or Local()

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        info = GaugeMetricFamily("stressbot_build_info", "stressbot version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily("stressbot_redis_up", "Redis answered this scrape", int(s.redis_up))
        yield from self._process()
        if not s.redis_up:
            return
        yield from self._feeds()
        yield from self._engine()
        yield from self._rules()
        yield from self._outbox()

    def _feeds(self) -> Iterator[Metric]:
        s = self.snap
        state = GaugeMetricFamily(
            "stressbot_feed_state",
            "1 for the feed's current state (stale_report: its process stopped reporting)",
            labels=["feed", "state"],
        )
        ticks = CounterMetricFamily("stressbot_feed_ticks", "ticks accepted", labels=["feed"])
        sym_ticks = CounterMetricFamily(
            "stressbot_feed_symbol_ticks",
            "ticks accepted, per source and canonical symbol",
            labels=["feed", "symbol"],
        )
        msgs = CounterMetricFamily("stressbot_feed_messages", "messages received", labels=["feed"])
        errors = CounterMetricFamily("stressbot_feed_errors", "errors", labels=["feed"])
        rejects = CounterMetricFamily(
            "stressbot_feed_rejects", "observations rejected, by reason", labels=["feed", "reason"]
        )
        tick_age = GaugeMetricFamily(
            "stressbot_feed_last_tick_age_seconds", "age of the last tick", labels=["feed"]
        )
        report_age = GaugeMetricFamily(
            "stressbot_feed_report_age_seconds", "age of the feed's health report", labels=["feed"]
        )
        serving = GaugeMetricFamily(
            "stressbot_symbol_source",
            "1 where this feed serves the symbol (and its process still reports)",
            labels=["symbol", "feed"],
        )
        for name, rec in sorted(s.feeds.items()):
            age = s.now - float(rec.get("updated") or 0.0)
            current = feed_state(rec, s.now, self.status_interval)
            for st in (*FEED_STATES, "stale_report"):
                state.add_metric([name, st], int(st == current))
            ticks.add_metric([name], float(rec.get("ticks") or 0))
            for sym, n in sorted((rec.get("symbol_ticks") or {}).items()):
                sym_ticks.add_metric([name, sym], float(n))
            msgs.add_metric([name], float(rec.get("msgs") or 0))
            errors.add_metric([name], float(rec.get("errors") or 0))
            for reason, n in sorted((rec.get("dropped") or {}).items()):
                rejects.add_metric([name, reason], float(n))
            if rec.get("last_tick_age") is not None:
                tick_age.add_metric([name], float(rec["last_tick_age"]) + age)
            report_age.add_metric([name], age)
            if current != "stale_report":
                for sym in rec.get("serving") or []:
                    serving.add_metric([sym, name], 1)
        yield from (state, ticks, sym_ticks, msgs, errors, rejects, tick_age, report_age, serving)

    def _engine(self) -> Iterator[Metric]:
        s = self.snap
        yield GaugeMetricFamily(
            "stressbot_tick_stream_length", "entries held in the tick stream", s.tick_stream_length
        )
        yield GaugeMetricFamily(
            "stressbot_engine_leader",
            "1 while an engine (of any process) holds the engine lease, else 0",
            int(s.engine_lease is not None),
        )
        yield GaugeMetricFamily(
            "stressbot_engine_standby", "engines standing by for the lease", len(s.engine_standby)
        )
        if s.engine.get("heartbeat") is not None:  # bot/notify/heartbeat.py: the deadman
            yield GaugeMetricFamily(
                "stressbot_heartbeat_last_timestamp_seconds",
                "wall time of the engine's last heartbeat; alert on time() minus it",
                float(s.engine["heartbeat"]),
            )
        if s.engine_clock is None:
            return
        yield GaugeMetricFamily(
            "stressbot_engine_event_time_seconds", "the engine's event clock", s.engine_clock
        )
        yield GaugeMetricFamily(
            "stressbot_engine_lag_seconds",
            "wall time minus the engine's event clock at its last checkpoint",
            s.engine_lag,
        )
        backlog = s.engine_backlog
        if backlog is not None:
            yield GaugeMetricFamily(
                "stressbot_engine_backlog_seconds",
                "behind the newest tick: arrival time of the newest tick minus that of the last "
                "tick the engine applied",
                backlog,
            )

    def _process(self) -> Iterator[Metric]:
        """This process's engine role and counters, and its notifier's delivery counters."""
        eng, notifier = self.local.engine, self.local.notifier
        limiter = self.local.commands.limiter if self.local.commands is not None else None
        if limiter is not None:
            yield CounterMetricFamily(
                "stressbot_command_requests",
                "Bot API calls of the Telegram command bot (replies, start-up; getUpdates "
                "excepted), paced with the alerts",
                limiter.requests,
            )
            yield CounterMetricFamily(
                "stressbot_command_rate_limited",
                "429 answers to the Telegram command bot's calls",
                limiter.rate_limited,
            )
        if eng is not None:
            role = GaugeMetricFamily(
                "stressbot_engine_role",
                "1 for this process's engine role (leader, standby, none: starting or lost)",
                labels=["role"],
            )
            current = engine_role(eng.lease)
            for r in ROLES:
                role.add_metric([r], int(r == current))
            yield role
            if current == "leader":  # a standby's engine holds no state of its own
                yield CounterMetricFamily(
                    "stressbot_engine_evaluations",
                    "rule evaluations (kept across restarts in the checkpoint)",
                    eng.engine.stats.evaluations,
                )
            alerts = CounterMetricFamily(
                "stressbot_alerts",
                "alerts this process committed to the outbox, by rule and kind",
                labels=["rule", "kind"],
            )
            for (rule, kind), n in sorted(eng.committed.items()):
                alerts.add_metric([rule, kind], n)
            yield alerts
        if notifier is not None:
            families = {
                "delivered": ("stressbot_deliveries", "alerts fully accepted by the destination"),
                "messages": ("stressbot_delivery_messages", "platform messages sent"),
                "retries": ("stressbot_delivery_retries", "requests retried after a failure"),
                "rate_limited": ("stressbot_delivery_rate_limited", "429 answers (rate limited)"),
                "parked": ("stressbot_delivery_parked", "alerts parked by this process"),
            }
            for attr, (name, doc) in families.items():
                fam = CounterMetricFamily(name, doc + " (this process)", labels=["destination"])
                for dest, rep in sorted(notifier.report.destinations.items()):
                    fam.add_metric([dest], float(getattr(rep, attr)))
                yield fam

    def _rules(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "stressbot_rule_state", "1 for the rule's current state", labels=["rule", "state"]
        )
        for rid, st in sorted(self.snap.rules.items()):
            current = str(st.get("state", "inactive"))
            for name in RULE_STATES:
                fam.add_metric([rid, name], int(name == current))
        yield fam

    def _outbox(self) -> Iterator[Metric]:
        s = self.snap
        yield GaugeMetricFamily("stressbot_outbox_length", "alerts in the outbox", s.outbox_length)
        pending = GaugeMetricFamily(
            "stressbot_outbox_pending",
            "outbox entries read by a destination and not yet acknowledged",
            labels=["destination"],
        )
        lag = GaugeMetricFamily(
            "stressbot_outbox_lag",
            "outbox entries a destination has not read yet",
            labels=["destination"],
        )
        parked = GaugeMetricFamily(
            "stressbot_parked_alerts",
            "alerts parked for a destination (redelivered when it recovers)",
            labels=["destination"],
        )
        dropped = GaugeMetricFamily(
            "stressbot_parked_dropped",
            "parked alerts dropped for a destination to keep notify.delivery.max_parked "
            "(a count kept in Redis: only grows, read at scrape time)",
            labels=["destination"],
        )
        failing = GaugeMetricFamily(
            "stressbot_destination_failing",
            "1 while the destination's last delivery attempts failed",
            labels=["destination"],
        )
        for name, fig in s.destinations.items():
            pending.add_metric([name], fig.pending)
            if fig.unread is not None:
                lag.add_metric([name], fig.unread)
            parked.add_metric([name], fig.parked)
            dropped.add_metric([name], fig.parked_dropped)
            failing.add_metric([name], int(bool(fig.outage)))
        yield from (pending, lag, parked, dropped, failing)
        silences = GaugeMetricFamily(
            "stressbot_silences", "silences by state (active, pending)", labels=["state"]
        )
        for state in ("active", "pending"):
            silences.add_metric([state], sum(x.state(s.now) == state for x in s.silences))
        yield silences


def render(snap: Snapshot, status_interval: float, local: Local | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap, status_interval, local))
    return generate_latest(registry)


def readiness(snap: Snapshot, status_interval: float, local: Local | None = None) -> str | None:
    """Why this process cannot do its job now, or None when it can: Redis answers, its engine
    is the leader or a standby behind a leader, and not every feed is down."""
    if not snap.redis_up:
        return snap.error or "Redis unavailable"
    eng = (local or Local()).engine
    if eng is not None:
        role = engine_role(eng.lease)
        if role == "none":
            return "the engine is neither leader nor standby (starting, or its lease ran out)"
        if role == "standby" and snap.engine_lease is None:
            return "standing by, and no engine holds the engine lease"
    if snap.feeds:
        ok = [r for r in snap.feeds.values() if feed_state(r, snap.now, status_interval) == "ok"]
        if not ok:
            return "no feed is ok"
    return None


class MetricsServer:
    """Serves /metrics, /healthz and /readyz until stopped."""

    def __init__(
        self,
        store: Store,
        host: str,
        port: int,
        *,
        status_interval: float = 2.0,
        local: Local | None = None,
        destinations: list[str] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.status_interval = status_interval
        self.local = local
        self.destinations = destinations or []
        self.bound_port: int | None = None
        self.ready = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _metrics(self, _req: web.Request) -> web.Response:
        snap = await read_snapshot(self.store, destinations=self.destinations)
        body = render(snap, self.status_interval, self.local)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _req: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _req: web.Request) -> web.Response:
        snap = await read_snapshot(self.store, destinations=self.destinations)
        why = readiness(snap, self.status_interval, self.local)
        if why is None:
            eng = self.local.engine if self.local is not None else None
            role = f" ({engine_role(eng.lease)})" if eng is not None else ""
            return web.Response(text=f"ready{role}\n")
        return web.Response(status=503, text=f"not ready: {why}\n")

    async def run(self, stop: asyncio.Event) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            try:
                await site.start()
            except OSError as e:  # the port is taken: the bot runs on, without metrics
                log.error(
                    "metrics: cannot listen on %s:%d (%s); set [metrics] port or enabled = false",
                    self.host,
                    self.port,
                    e.strerror or e,
                )
                self.ready.set()
                await stop.wait()
                return
            # the bound (host, port) of each listening socket: port 0 picks a free one
            addresses: list[Any] = list(runner.addresses)
            self.bound_port = int(addresses[0][1]) if addresses else self.port
            log.info("metrics on http://%s:%d/metrics", self.host, self.bound_port)
            self.ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()
