"""Live operation: the engine consumes the tick stream in Redis, and `stressbot run` starts
feeds, engine and notifiers together.

The engine's checkpoint holds the id of the last tick-stream entry it has applied. Alerts are
committed with the checkpoint of the batch that raised them, so a restart continues exactly
after the last applied tick: nothing is repeated, nothing lost (as in replay).

Rule files are watched: an edit that loads cleanly replaces the rules and keeps the market
history and the state of every rule whose id is unchanged; an edit with mistakes is logged
with file and line and the last good rules stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.errors import RuleError
from bot.core.models import Alert, AlertKind, Pattern, Severity, iso_utc
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.notify.service import NotifierService
from bot.runtime.config import Config
from bot.store.connection import open_store
from bot.store.redis_store import Checkpoint, Store
from bot.telegram.command_bot import TelegramCommandBot
from connectors.history.backfill import Backfill
from connectors.supervisor import FeedSupervisor

log = logging.getLogger(__name__)

FEED_POLL = 2.0  # seconds between reads of the feeds' health records
RULES_POLL = 5.0  # seconds between checks of the rule files for edits
UNHEALTHY = frozenset({"stale", "down"})


@dataclass
class FeedAlertState:
    """Whether a feed's trouble has been announced (so recovery is announced once too)."""

    state: str = "ok"
    alerted_at: float | None = None


class EngineService:
    """Consumes `{prefix}:ticks`, evaluates the rules, writes alerts and state to the store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        rules: RuleSet,
        *,
        rules_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.rules = rules
        self.rules_dir = rules_dir
        self._clock = clock
        self.engine = self._new_engine(rules)
        self.position = "0-0"
        self.feeds: dict[str, FeedAlertState] = {}
        self._series_sent: dict[str, float] = {}
        self._rules_mtime = self._mtime()
        self.ticks_applied = 0

    def _new_engine(self, rules: RuleSet) -> Engine:
        return Engine.from_config(rules, self.config.engine, self.config.sessions)

    async def restore(self) -> None:
        cp = await self.store.load_checkpoint()
        if cp is None:
            # First start: whatever the stream already holds, or backfill adds, is history
            # that warms the windows; alerts start from now.
            self.engine.evaluate_from = self._clock() - self.config.engine.max_lateness
            log.info(
                "engine: first start; ticks before %s only warm the windows",
                iso_utc(self.engine.evaluate_from),
            )
            return
        extra = self.engine.restore(cp.state)
        self.position = cp.position
        self.feeds = {k: FeedAlertState(**v) for k, v in extra.get("feeds", {}).items()}
        self._series_sent = extra.get("series_sent", {})
        if cp.fingerprint != self.rules.fingerprint:
            log.info(
                "engine: rules changed since the checkpoint; states of unchanged rule ids are kept"
            )
        log.info("engine: resumed at tick %s, event time %s", cp.position, iso_utc(cp.clock))

    async def run(self, stop: asyncio.Event) -> None:
        await self.restore()
        cfg = self.config.engine
        last_cp = last_feeds = last_rules = time.monotonic()
        dirty = False
        while not stop.is_set():
            batch = await self.store.read_ticks(self.position, count=cfg.tick_batch, block_ms=250)
            if batch:
                add = self.engine.add
                for _eid, t in batch:
                    add(t.ts, t.symbol, t.value, t.source)
                self.position = batch[-1][0]
                self.ticks_applied += len(batch)
                dirty = True
            now = time.monotonic()
            # Time passes while markets are quiet: move event time with the wall clock,
            # held back by the allowed lateness so ticks in flight are still in order.
            self.engine.advance_to(self._clock() - cfg.max_lateness)
            if now - last_feeds >= FEED_POLL:
                last_feeds = now
                await self._check_feeds()
            if self.rules_dir is not None and now - last_rules >= RULES_POLL:
                last_rules = now
                await self._maybe_reload_rules()
            if self.engine.pending or (dirty and now - last_cp >= cfg.checkpoint_every):
                await self.commit()
                last_cp, dirty = now, False
        await self.commit()

    async def commit(self) -> None:
        e = self.engine
        alerts = e.take_alerts()
        extra: dict[str, Any] = {
            "feeds": {k: vars(v) for k, v in self.feeds.items()},
            "series_sent": self._series_sent,
        }
        points = e.points_since(self._series_sent)
        await self.store.commit(
            Checkpoint(self.position, self.rules.fingerprint, max(e.clock, 0.0), e.snapshot(extra)),
            alerts,
            rule_states=e.rule_states(),
            latest=e.latest(),
        )
        if points:
            keep = e.clock - e.chart_retention()
            await self.store.add_series(
                {s: [p for p in pts if p[0] >= keep] for s, pts in points.items()}, keep
            )
            for s, pts in points.items():
                self._series_sent[s] = pts[-1][0]
        for a in alerts:
            log.info("alert %s: %s", a.id, a.summary)

    # ---- feed health as alerts -------------------------------------------------------------

    async def _check_feeds(self) -> None:
        statuses = await self.store.feed_statuses()
        now = self._clock()
        for name, st in statuses.items():
            state = str(st.get("state", "ok"))
            fa = self.feeds.setdefault(name, FeedAlertState())
            if state in UNHEALTHY and fa.alerted_at is None:
                fa.state, fa.alerted_at = state, now
                self._feed_alert(name, st, now, AlertKind.FIRING)
            elif state not in UNHEALTHY and fa.alerted_at is not None and state != "starting":
                self._feed_alert(name, st, now, AlertKind.RESOLVED)
                fa.state, fa.alerted_at = state, None
            else:
                fa.state = state

    def _feed_alert(self, name: str, st: dict[str, Any], now: float, kind: AlertKind) -> None:
        state = str(st.get("state"))
        detail = str(st.get("detail") or "")
        last = st.get("last_tick_ts")
        age = f"; last tick {now - float(last):.0f} s ago" if last else ""
        if kind is AlertKind.FIRING:
            summary = f"Feed {name} is {state}{age}" + (f": {detail}" if detail else "")
        else:
            summary = f"Resolved: feed {name} is {state} again"
        fired = self.feeds[name].alerted_at or now
        self.engine.queue(
            [
                Alert(
                    id=f"feed:{name}@{iso_utc(fired)}"
                    + (":resolved" if kind is AlertKind.RESOLVED else ""),
                    ts=now,
                    rule=f"feed:{name}",
                    pattern=Pattern.FEED_HEALTH.value,
                    severity=Severity.WARNING.value,
                    summary=summary,
                    kind=kind,
                )
            ]
        )

    # ---- rule reload -------------------------------------------------------------------------

    def _mtime(self) -> float:
        if self.rules_dir is None:
            return 0.0
        return max((p.stat().st_mtime for p in self.rules_dir.glob("*.toml")), default=0.0)

    async def _maybe_reload_rules(self) -> None:
        assert self.rules_dir is not None
        m = await asyncio.to_thread(self._mtime)
        if m == self._rules_mtime:
            return
        self._rules_mtime = m
        try:
            rules = await asyncio.to_thread(load_rules, self.rules_dir, self.config.sessions)
        except RuleError as e:
            log.error(
                "rules: the edited rules have problems, keeping the last good ones:\n%s",
                "\n".join(e.problems),
            )
            return
        engine = self._new_engine(rules)
        engine.restore(self.engine.snapshot())
        engine.queue(self.engine.take_alerts())  # nothing raised is lost
        self.engine, self.rules = engine, rules
        log.info("rules: reloaded %d rule(s) from %s", len(rules.rules), self.rules_dir)


async def run_live(config: Config, rules_dir: Path | None = None) -> int:
    """`stressbot run`: feeds, engine and notifiers until SIGINT or SIGTERM."""
    rdir = rules_dir or config.engine.rules_dir or default_rules_dir()
    rules = load_rules(rdir, config.sessions)
    async with open_store(config.redis) as (store, _):
        return await _run_services(config, store, rules, Path(rdir))


async def _run_services(config: Config, store: Store, rules: RuleSet, rules_dir: Path) -> int:
    first_start = await store.load_checkpoint() is None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    services: list[tuple[str, Any]] = [
        ("feeds", FeedSupervisor(config.feeds, store)),
        ("engine", EngineService(config, store, rules, rules_dir=rules_dir)),
        ("notifier", NotifierService(config, store)),
    ]
    if first_start and config.feeds.enabled and config.feeds.backfill.days:
        services.append(("backfill", Backfill(config.feeds.backfill, store)))
    commands = TelegramCommandBot.from_config(config, store)
    if commands is not None:
        services.append(("telegram", commands))
    log.info(
        "stressbot: running %s with %d rule(s); Ctrl-C to stop",
        ", ".join(n for n, _ in services),
        len(rules.rules),
    )
    async with asyncio.TaskGroup() as tg:
        for name, svc in services:
            tg.create_task(_guard(name, svc.run(stop), stop), name=name)
    return 0


async def _guard(name: str, coro: Any, stop: asyncio.Event) -> None:
    """One service failing stops the others cleanly instead of leaving them orphaned."""
    try:
        await coro
    except Exception:
        log.exception("%s failed; stopping stressbot", name)
        stop.set()
        raise
