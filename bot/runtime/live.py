"""Live operation: the engine consumes the tick stream in Redis, and `stressbot run` starts
feeds, engine and notifiers together.

The engine's checkpoint holds the id of the last tick-stream entry it has applied. Alerts are
committed with the checkpoint of the batch that raised them, so a restart continues exactly
after the last applied tick: nothing is repeated, nothing lost (as in replay).

Event time through a backlog: after downtime the stream holds hours of ticks. They are
applied in stream order and the engine's clock moves with them alone, exactly as in replay,
whatever the batch size; wall time moves the clock only once a read finds the end of the
stream (`consume`). If ticks were trimmed from the stream before the engine applied them
(it was down or behind by more than the stream's length), the missing span is logged, kept
in the engine's status record (`Store.engine_status`) and marked as a gap in the engine, so
no window compares across it.

Redis outages (a restart, a failover, a network cut, a Cluster healing, a master refusing
writes with NOREPLICAS while too few replicas are connected: what
:func:`bot.store.connection.is_outage` counts) stop no service. The engine waits with
capped, jittered backoff (:mod:`bot.core.retry`) and, when Redis answers again, resumes from
the checkpoint: the alerts raised after it were not committed and are raised again, once, from
the ticks re-read. When the checkpoint is gone too (a Redis restarted without persistence) it
carries on from the state it holds in memory and writes a new checkpoint at once. Every other
service is restarted by :func:`_guard` with the same backoff when it fails on the store; the
feeds' writer buffers ticks meanwhile (bounded, see ``connectors/writer.py``). redis-py (8.x)
retries a command itself only a few times (its default ``Retry(ExponentialWithJitterBackoff(
base=1, cap=10), 3)`` on ``ConnectionError``/``TimeoutError``) and then raises; its pool
reconnects lazily on the next command, so waiting and trying again is all that is needed.

One active engine at a time (:mod:`bot.runtime.leader`): the engine holds the engine lease
while it consumes, and every commit is fenced by it; other instances stand by (their feeds
and notifiers run as usual) and the first to get the lease after the leader's death resumes
from the checkpoint. A leader whose lease was taken drops its state and stands by.

Rule files are watched: an edit that loads cleanly replaces the rules and keeps the market
history and the state of every rule whose id is unchanged; an edit with mistakes (anything
:func:`~bot.engine.rulefile.load_rules` reports: unreadable, too large, not UTF-8, not TOML,
nested too deeply, invalid) is logged with file and reason, kept in the engine's status record
(``rules``), and the last good rules stay in force. Changes are noticed by real file events
(`watchfiles.awatch` on the folder: inotify on Linux, debounced, stopped by our stop event) and,
as a fallback, by a poll every ``RULES_POLL`` seconds. Either way what is compared is the
folder's signature: every ``*.toml`` with its size, mtime, ctime and inode, so a deleted or
renamed file, or one copied in with an older mtime (``cp -p``), is a change too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.core.errors import RuleError
from bot.core.models import Tick, iso_utc
from bot.core.retry import Backoff, BackoffPolicy, sleep_or_stop
from bot.engine.engine import Engine
from bot.engine.episodes import stress_report
from bot.engine.pages import PagesError
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.notify.heartbeat import heartbeat_alert
from bot.notify.service import NotifierService
from bot.runtime.checkpoint import commit_engine
from bot.runtime.config import Config
from bot.runtime.feed_alerts import FeedAlerts
from bot.runtime.leader import EngineLease, LeaseLost
from bot.runtime.metrics import Local, MetricsServer
from bot.store.connection import is_outage, open_store, outage_reason
from bot.store.redis_store import FencedOut, Store, stream_id
from bot.telegram.command_bot import TelegramCommandBot
from bot.telegram.session_chart import alert_renderer
from connectors.history.backfill import Backfill
from connectors.supervisor import FeedSupervisor

log = logging.getLogger(__name__)

FEED_POLL = 2.0  # seconds between reads of the feeds' health records
RULES_POLL = 5.0  # seconds between checks of the rule files for edits
LOST_KEEP = 10  # input-lost records kept in the engine's status
#: Waiting for Redis to come back: from 0.2 s up to 5 s, jittered so that instances spread out.
STORE_BACKOFF = BackoffPolicy(initial=0.2, max=5.0, multiplier=2.0, jitter=0.5)


def consume(
    engine: Engine, batch: Sequence[tuple[str, Tick]], *, caught_up: bool, now: float
) -> None:
    """The live loop's core (pure): apply ticks read from the stream, in stream order; wall
    time `now` moves the clock only when the read reached the end of the stream. So ticks
    of a backlog are evaluated at their own instants, as in replay, whatever the batch size."""
    add = engine.add
    for _eid, t in batch:
        add(t.ts, t.symbol, t.value, t.source)
    if caught_up:
        engine.advance_to(now)


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
        lease: EngineLease | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.rules = rules
        self.rules_dir = rules_dir
        self._clock = clock
        self.engine = self._new_engine(rules)
        self.position = "0-0"
        self.feed_alerts = FeedAlerts(
            config.engine.feed_alert_after, config.engine.feed_alert_group
        )
        self._series_sent: dict[str, float] = {}
        self._rules_sig = self._signature()
        self._rules_changed = asyncio.Event()  # set by the file watcher
        self.reloads = 0  # rule sets loaded on an edit
        self.reload_failures = 0  # edits refused (the last good rules stayed)
        self.ticks_applied = 0
        self.stream_seen: int | None = 0  # stream entries ever added up to `position`
        self.status: dict[str, Any] = {}
        self.committed: Counter[tuple[str, str]] = Counter()  # (rule, kind) -> alerts, metrics
        self.outages = 0  # store outages waited out
        self.lease = lease if lease is not None else EngineLease(store)
        self.leaderships_lost = 0
        self._next_beat = 0.0  # monotonic: when the next heartbeat is due

    def _new_engine(self, rules: RuleSet) -> Engine:
        return Engine.from_config(rules, self.config.engine, self.config.sessions)

    async def restore(self) -> None:
        cp = await self.store.load_checkpoint()
        self.status = await self.store.engine_status()
        wall = self._clock()
        if cp is None:
            # First start: whatever the stream already holds, or backfill adds, is history
            # that warms the windows; alerts start from now.
            self.engine.evaluate_from = wall - self.config.engine.max_lateness
            info = await self.store.tick_stream_info()
            self.stream_seen = info.removed if info else 0
            log.info(
                "engine: first start; ticks before %s only warm the windows",
                iso_utc(self.engine.evaluate_from),
            )
            await self._set_status(state="started", started=iso_utc(wall))
            return
        try:
            extra = self.engine.restore(cp.state, cp.pages)
        except PagesError as err:
            log.error(
                "engine: the checkpoint's series pages are damaged (%s); resuming with the "
                "rule states but without the series history, which the feeds fill again",
                err,
            )
            extra = self.engine.restore(cp.state, without_series=True)
        self.position = cp.position
        self.feed_alerts.load(extra.get("feeds", {}))
        self._series_sent = extra.get("series_sent", {})
        seen = extra.get("stream_seen")
        self.stream_seen = None if seen is None else int(seen)
        if cp.fingerprint != self.rules.fingerprint:
            log.info(
                "engine: rules changed since the checkpoint; states of unchanged rule ids are kept"
            )
        log.info("engine: resumed at tick %s, event time %s", cp.position, iso_utc(cp.clock))
        await self._set_status(
            state="resumed", started=iso_utc(wall), resumed_at=cp.position, clock=iso_utc(cp.clock)
        )
        await self._check_lost()

    async def _check_lost(self) -> None:
        """Were entries after our position trimmed from the stream before we applied them?"""
        info = await self.store.tick_stream_info()
        if info is None or info.first_id is None or self.position == "0-0":
            return
        if stream_id(info.first_id) <= stream_id(self.position):
            return  # our position is still held: nothing after it was trimmed
        lost = None if self.stream_seen is None else info.removed - self.stream_seen
        self.stream_seen = info.removed  # from here on we read on from the oldest entry held
        if lost is not None and lost <= 0:
            return
        nxt = await self.store.read_ticks(self.position, count=1)
        e = self.engine
        start = e.last_input if e.last_input > -math.inf else e.clock
        end = nxt[0][1].ts if nxt else self._clock() - self.config.engine.max_lateness
        if end > start:
            e.mark_gap(start, end)
        what = f"{lost:,} tick(s)" if lost is not None else "ticks"
        log.warning(
            "engine: %s after the checkpoint (stream id %s) were trimmed from the tick stream "
            "before the engine applied them; input from %s to %s is missing and no window "
            "compares across it",
            what,
            self.position,
            iso_utc(start),
            iso_utc(end),
        )
        record = {
            "detected": iso_utc(self._clock()),
            "from": iso_utc(start),
            "to": iso_utc(end),
            "lost": lost,
            "after": self.position,
            "reason": "trimmed from the tick stream before the engine applied them",
        }
        self.status["input_lost"] = [*self.status.get("input_lost", []), record][-LOST_KEEP:]
        await self._set_status()

    async def _set_status(self, **fields: Any) -> None:
        self.status.update(fields)
        self.status.update(role="leader", owner=self.lease.owner, fence=self.lease.value)
        await self.store.set_engine_status(self.status, fence=self.lease.check())

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; a Redis outage is waited out, then the engine resumes."""
        watcher = None
        if self.rules_dir is not None:
            watcher = asyncio.create_task(self._watch_rules(stop), name="engine:rules-watch")
        try:
            await self._run(stop)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(STORE_BACKOFF)
        started = False
        while not stop.is_set():
            keeper: asyncio.Task[None] | None = None
            try:
                if not await self.lease.acquire(stop):
                    break
                keeper = asyncio.create_task(self.lease.keep(), name="engine:lease")
                if not started:
                    await self.restore()
                    started = True
                else:
                    await self._resume()
                backoff.reset()
                await self._consume(stop)
            except (LeaseLost, FencedOut) as e:
                self._stand_by(str(e))
            except Exception as e:
                if not is_outage(e):  # what an outage is: bot.store.connection.is_outage
                    raise
                if self.lease.value is not None and not self.lease.holds():
                    # our lease ran out while the read was failing (this process was paused,
                    # or Redis was out past the lease): another engine may lead by now, so
                    # stand by as after a lost lease instead of waiting out an outage
                    self._stand_by(f"store unavailable ({outage_reason(e)}) past our lease")
                    continue
                delay = backoff.next_delay()
                self.outages += 1
                log.warning(
                    "engine: store unavailable (%s); retrying in %.1f s, then resuming "
                    "from the checkpoint",
                    outage_reason(e),
                    delay,
                )
                await sleep_or_stop(stop, delay)
            finally:
                if keeper is not None:
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keeper
        try:
            if self.lease.value is not None:
                await self.commit()
        except (LeaseLost, FencedOut) as e:
            log.warning("engine: final checkpoint not written: %s", e)
        except Exception as e:
            if not is_outage(e):
                raise
            log.warning(
                "engine: final checkpoint not written (%s); resuming from the last",
                outage_reason(e),
            )
        finally:
            await self.lease.release()

    def _stand_by(self, why: str) -> None:
        """This engine no longer leads: forget the lease, the state is reloaded on takeover."""
        self.lease.drop()
        self.leaderships_lost += 1
        log.warning("engine: %s; standing by (state is reloaded on takeover)", why)

    async def _resume(self) -> None:
        """After an outage: back to the checkpoint, or on from memory if Redis lost it."""
        cp = await self.store.load_checkpoint()
        if cp is None and (self.position != "0-0" or self.ticks_applied):
            log.warning(
                "engine: Redis came back without the checkpoint (restarted without "
                "persistence?); carrying on from the state in memory at tick %s",
                self.position,
            )
            await self._set_status(state="resumed", resumed_at=self.position, memory=True)
            await self.commit()
            return
        self.engine = self._new_engine(self.rules)
        self.position, self.ticks_applied = "0-0", 0
        await self.restore()
        log.info("engine: resumed from the checkpoint")

    async def _consume(self, stop: asyncio.Event) -> None:
        cfg = self.config.engine
        last_cp = last_feeds = last_rules = last_lost = time.monotonic()
        dirty = False
        caught_up = True
        while not stop.is_set():
            self.lease.check()  # raises LeaseLost once our view of the lease ran out
            batch = await self.store.read_ticks(
                self.position, count=cfg.tick_batch, block_ms=250 if caught_up else None
            )
            caught_up = len(batch) < cfg.tick_batch
            consume(self.engine, batch, caught_up=caught_up, now=self._clock() - cfg.max_lateness)
            if not caught_up:
                await asyncio.sleep(0)  # let the other services run while catching up
            if batch:
                self.position = batch[-1][0]
                self.ticks_applied += len(batch)
                if self.stream_seen is not None:
                    self.stream_seen += len(batch)
                dirty = True
            state = "live" if caught_up else "catching up"
            if self.status.get("state") != state:
                await self._set_status(state=state, since=iso_utc(self._clock()))
            now = time.monotonic()
            if not caught_up and now - last_lost >= cfg.checkpoint_every:
                last_lost = now  # falling behind by more than the stream holds loses input
                await self._check_lost()
            if now - last_feeds >= FEED_POLL:
                last_feeds = now
                await self._check_feeds()
            if self.rules_dir is not None and (
                self._rules_changed.is_set() or now - last_rules >= RULES_POLL
            ):
                last_rules = now
                self._rules_changed.clear()
                await self._maybe_reload_rules()
            await self._heartbeat()
            if self.engine.pending or (dirty and now - last_cp >= cfg.checkpoint_every):
                await self.commit()
                last_cp, dirty = now, False

    async def commit(self) -> None:
        fence = self.lease.check()
        e = self.engine
        alerts = e.take_alerts()
        extra: dict[str, Any] = {
            "feeds": self.feed_alerts.dump(),
            "series_sent": self._series_sent,
            "stream_seen": self.stream_seen,
        }
        points = e.points_since(self._series_sent)
        keep = e.clock - e.chart_retention()
        try:
            await commit_engine(
                self.store,
                e,
                self.position,
                self.rules.fingerprint,
                extra,
                alerts,
                fence=fence,
                series={s: [p for p in pts if p[0] >= keep] for s, pts in points.items()},
                keep_after=keep,
            )
        except BaseException:
            e.queue(alerts)  # not committed (as far as we know): kept for the next commit
            raise
        for s, pts in points.items():
            self._series_sent[s] = pts[-1][0]
        if points:  # the stress gauge and the closest episodes, for /like and /status
            await self._set_status(stress=stress_report(e))
        for a in alerts:
            self.committed[(a.rule, a.kind.value)] += 1
            log.info("alert %s: %s", a.id, a.summary)

    # ---- the deadman heartbeat (bot/notify/heartbeat.py) -------------------------------------

    async def _heartbeat(self) -> None:
        """Every ``notify.heartbeat.interval`` while consuming: a heartbeat into the outbox
        (when a destination asks for it) and its time into the engine's status record."""
        interval = self.config.notify.heartbeat.interval
        if interval <= 0 or time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + interval
        now = self._clock()
        if any(r.heartbeat for r in self.config.notify.routes()):
            await self.store.publish_alert(heartbeat_alert(now, interval))
        await self._set_status(heartbeat=now)

    # ---- feed health as alerts -------------------------------------------------------------

    async def _check_feeds(self) -> None:
        """Feed health as alerts (`bot.runtime.feed_alerts`: pending period, grouping),
        raised through the engine so the rules' inhibitions hold them back too."""
        statuses = await self.store.feed_statuses()
        alerts = self.feed_alerts.observe(statuses, self._clock())
        if alerts:
            self.engine.raise_external(alerts)

    # ---- rule reload -------------------------------------------------------------------------

    def _signature(self) -> tuple[tuple[str, int, int, int, int], ...]:
        """Every rule file with size, mtime, ctime and inode: any edit, delete, rename or copy
        (with an older mtime too) changes it."""
        if self.rules_dir is None:
            return ()
        out = []
        for p in self.rules_dir.glob("*.toml"):
            try:
                st = p.stat()
            except OSError:  # deleted between the listing and the stat
                continue
            out.append((p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        return tuple(sorted(out))

    async def _watch_rules(self, stop: asyncio.Event) -> None:
        """Wake the reload check on file events in the rules folder (watchfiles, inotify).

        ``awatch(path, debounce=ms, step=ms, stop_event=..., recursive=False)`` yields a set
        of (Change, path) after changes settle for `step` ms (at most `debounce` ms grouped);
        it returns when `stop_event` is set. Should watching fail (no inotify watches left,
        the folder gone), the poll every RULES_POLL seconds still notices every change."""
        assert self.rules_dir is not None
        try:
            from watchfiles import awatch

            async for _changes in awatch(
                self.rules_dir, stop_event=stop, debounce=400, step=50, recursive=False
            ):
                self._rules_changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(
                "rules: watching %s failed (%s: %s); checking it every %.0f s instead",
                self.rules_dir,
                type(e).__name__,
                e,
                RULES_POLL,
            )

    async def _maybe_reload_rules(self) -> None:
        assert self.rules_dir is not None
        sig = await asyncio.to_thread(self._signature)
        if sig == self._rules_sig:
            return
        self._rules_sig = sig
        try:
            rules = await asyncio.to_thread(load_rules, self.rules_dir, self.config.sessions)
        except RuleError as e:
            problems = list(e.problems)
        except Exception as e:  # load_rules reports everything as RuleError; belt and braces
            problems = [f"{self.rules_dir}: {type(e).__name__}: {e}"[:500]]
        else:
            problems = []
        if problems:
            self.reload_failures += 1
            log.error(
                "rules: the edited rules have problems, keeping the last good ones (%d rule(s)):"
                "\n%s",
                len(self.rules.rules),
                "\n".join(problems[:20]),
            )
            await self._set_status(
                rules={
                    "state": "problems",
                    "kept": len(self.rules.rules),
                    "problems": problems[:10],
                }
            )
            return
        engine = self._new_engine(rules)
        engine.restore(self.engine.snapshot())
        engine.adopt_pages(self.engine)
        engine.queue(self.engine.take_alerts())  # nothing raised is lost
        self.engine, self.rules = engine, rules
        self.reloads += 1
        log.info("rules: reloaded %d rule(s) from %s", len(rules.rules), self.rules_dir)
        await self._set_status(rules={"state": "ok", "loaded": len(rules.rules)})


async def run_live(config: Config, rules_dir: Path | None = None) -> int:
    """`stressbot run`: feeds, engine and notifiers until SIGINT or SIGTERM."""
    rdir = rules_dir or config.engine.rules_dir or default_rules_dir()
    rules = load_rules(rdir, config.sessions)
    async with open_store(config.redis) as (store, _):
        return await _run_services(config, store, rules, Path(rdir))


async def _run_services(config: Config, store: Store, rules: RuleSet, rules_dir: Path) -> int:
    first_start = not await store.has_checkpoint()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    engine = EngineService(config, store, rules, rules_dir=rules_dir)
    notifier = NotifierService(config, store, renderer=alert_renderer(config.sessions))
    services: list[tuple[str, Any]] = [
        ("feeds", FeedSupervisor(config.feeds, store)),
        ("engine", engine),
        ("notifier", notifier),
    ]
    if first_start and config.feeds.enabled and config.feeds.backfill.days:
        services.append(("backfill", Backfill(config.feeds.backfill, store)))
    commands = TelegramCommandBot.from_config(config, store)
    if commands is not None:
        services.append(("telegram", commands))
    if config.metrics.enabled:
        m = config.metrics
        interval = config.feeds.status_interval
        local = Local(engine=engine, notifier=notifier, commands=commands)
        dests = config.notify.destination_names
        metrics = MetricsServer(
            store, m.host, m.port, status_interval=interval, local=local, destinations=dests
        )
        services.append(("metrics", metrics))
    log.info(
        "stressbot: running %s with %d rule(s); Ctrl-C to stop",
        ", ".join(n for n, _ in services),
        len(rules.rules),
    )
    async with asyncio.TaskGroup() as tg:
        for name, svc in services:
            tg.create_task(_guard(name, svc, stop), name=name)
    return 0


async def _guard(name: str, svc: Any, stop: asyncio.Event) -> None:
    """Run one service until `stop`. A failure on the store (Redis down) restarts it after a
    capped, jittered backoff; any other failure stops the others cleanly instead of leaving
    them orphaned."""
    backoff = Backoff(STORE_BACKOFF)
    while True:
        began = time.monotonic()
        try:
            await svc.run(stop)
            return
        except Exception as e:
            if not is_outage(e):
                log.exception("%s failed; stopping stressbot", name)
                stop.set()
                raise
            if stop.is_set():
                return
            if time.monotonic() - began > 60.0:
                backoff.reset()  # it ran well for a while: a new outage
            delay = backoff.next_delay()
            log.warning(
                "%s: store unavailable (%s); restarting it in %.1f s",
                name,
                outage_reason(e),
                delay,
            )
            if await sleep_or_stop(stop, delay):
                return
