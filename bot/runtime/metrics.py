"""Watching the watcher: Prometheus metrics, liveness and readiness over HTTP.

    GET /metrics   Prometheus text format (prometheus_client's exposition)
    GET /healthz   200 while the process answers (liveness)
    GET /readyz    200 when it can do its job: Redis answers and, if feeds are configured,
                   at least one feed is ok; 503 with the reason otherwise

The figures are read from the store at scrape time, like an exporter, so they say what the
whole deployment wrote there (feeds, engine, outbox), whichever process wrote it, and a scrape
never races the hot paths. Feed records carry their own report time: a feed whose last report
is older than three status intervals is reported as ``stale_report`` (its process is gone).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from bot import __version__
from bot.store.redis_store import Store, stream_id

log = logging.getLogger(__name__)

FEED_STATES = ("starting", "ok", "stale", "down", "closed")
RULE_STATES = ("inactive", "pending", "firing")
REDIS_TIMEOUT = 2.0  # seconds a scrape waits for Redis before it reports it down


@dataclass
class Snapshot:
    """What one scrape read from the store."""

    now: float
    redis_up: bool = False
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine_clock: float | None = None
    engine_position: str | None = None
    engine_lease: str | None = None  # the active engine's lease value; None: no leader
    engine_standby: int = 0
    newest_tick_id: str | None = None
    tick_stream_length: int = 0
    outbox_length: int = 0
    groups: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


async def read_snapshot(store: Store, now: float | None = None) -> Snapshot:
    """Read every figure from the store; a Redis failure gives ``redis_up = False``."""
    snap = Snapshot(now=time.time() if now is None else now)
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            snap.feeds = await store.feed_statuses()
            snap.rules = await store.rule_states()
            cp = await store.load_checkpoint()
            if cp is not None:
                snap.engine_clock, snap.engine_position = cp.clock, cp.position
            est = await store.engine_status()
            snap.engine_lease = est.get("lease")
            snap.engine_standby = len(est.get("standby") or [])
            r = store.redis
            newest: Any = await r.xrevrange(store.k_ticks, count=1)
            if newest:
                snap.newest_tick_id = _s(newest[0][0])
            snap.tick_stream_length = int(await r.xlen(store.k_ticks))
            snap.outbox_length = int(await r.xlen(store.k_outbox))
            if snap.outbox_length:
                groups: Any = await r.xinfo_groups(store.k_outbox)
                snap.groups = [{_s(k): v for k, v in g.items()} for g in groups]
        snap.redis_up = True
    except (RedisError, OSError, TimeoutError) as e:
        snap.error = f"Redis unavailable: {type(e).__name__}"
    return snap


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class SnapshotCollector(Collector):
    """Prometheus families of one snapshot."""

    def __init__(self, snap: Snapshot, status_interval: float) -> None:
        self.snap = snap
        self.stale_report = max(3 * status_interval, 30.0)

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        info = GaugeMetricFamily("stressbot_build_info", "stressbot version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily("stressbot_redis_up", "Redis answered this scrape", int(s.redis_up))
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
            "1 where this feed serves the symbol",
            labels=["symbol", "feed"],
        )
        for name, rec in sorted(s.feeds.items()):
            age = s.now - float(rec.get("updated") or 0.0)
            current = "stale_report" if age > self.stale_report else str(rec.get("state"))
            for st in (*FEED_STATES, "stale_report"):
                state.add_metric([name, st], int(st == current))
            ticks.add_metric([name], float(rec.get("ticks") or 0))
            msgs.add_metric([name], float(rec.get("msgs") or 0))
            errors.add_metric([name], float(rec.get("errors") or 0))
            for reason, n in sorted((rec.get("dropped") or {}).items()):
                rejects.add_metric([name, reason], float(n))
            if rec.get("last_tick_age") is not None:
                tick_age.add_metric([name], float(rec["last_tick_age"]) + age)
            report_age.add_metric([name], age)
            for sym in rec.get("serving") or []:
                serving.add_metric([sym, name], 1)
        yield from (state, ticks, msgs, errors, rejects, tick_age, report_age, serving)

    def _engine(self) -> Iterator[Metric]:
        s = self.snap
        yield GaugeMetricFamily(
            "stressbot_tick_stream_length", "entries held in the tick stream", s.tick_stream_length
        )
        yield GaugeMetricFamily(
            "stressbot_engine_leader",
            "1 while an engine holds the engine lease (the active engine), else 0",
            int(s.engine_lease is not None),
        )
        yield GaugeMetricFamily(
            "stressbot_engine_standby", "engines standing by for the lease", s.engine_standby
        )
        if s.engine_clock is None:
            return
        yield GaugeMetricFamily(
            "stressbot_engine_event_time_seconds", "the engine's event clock", s.engine_clock
        )
        yield GaugeMetricFamily(
            "stressbot_engine_lag_seconds",
            "wall time minus the engine's event clock at its last checkpoint",
            s.now - s.engine_clock,
        )
        pos, newest = s.engine_position, s.newest_tick_id
        if pos and newest and "-" in pos:
            behind = max(0.0, (stream_id(newest)[0] - stream_id(pos)[0]) / 1000.0)
            yield GaugeMetricFamily(
                "stressbot_engine_backlog_seconds",
                "arrival time of the newest tick minus that of the last tick the engine applied",
                behind,
            )

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
        for g in s.groups:
            name = _s(g.get("name", "?"))
            pending.add_metric([name], float(g.get("pending") or 0))
            if g.get("lag") is not None:
                lag.add_metric([name], float(g["lag"]))
        yield pending
        yield lag


def render(snap: Snapshot, status_interval: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap, status_interval))
    return generate_latest(registry)


def readiness(snap: Snapshot, status_interval: float) -> str | None:
    """Why the deployment cannot do its job now, or None when it can."""
    if not snap.redis_up:
        return snap.error or "Redis unavailable"
    if snap.feeds:
        fresh = max(3 * status_interval, 30.0)
        ok = [
            n
            for n, r in snap.feeds.items()
            if r.get("state") == "ok" and snap.now - float(r.get("updated") or 0.0) <= fresh
        ]
        if not ok:
            return "no feed is ok"
    return None


class MetricsServer:
    """Serves /metrics, /healthz and /readyz until stopped."""

    def __init__(self, store: Store, host: str, port: int, *, status_interval: float = 2.0) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.status_interval = status_interval
        self.bound_port: int | None = None
        self.ready = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _metrics(self, _req: web.Request) -> web.Response:
        body = render(await read_snapshot(self.store), self.status_interval)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _req: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _req: web.Request) -> web.Response:
        why = readiness(await read_snapshot(self.store), self.status_interval)
        if why is None:
            return web.Response(text="ready\n")
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
