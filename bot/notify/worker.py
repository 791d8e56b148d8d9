"""One destination's delivery loop: lease, claims, retries over the horizon, parking, notes.

A :class:`Worker` delivers the outbox to one destination, in outbox order, while its process
holds the destination's lease (other processes stand by and take over within a lease TTL of
its death, reclaiming its pending entries with XAUTOCLAIM). Per alert:

1. Claim the alert for this destination (a per-alert ``SET NX PX`` with the consumer name);
   if its delivery mark says sent, parked or dropped, acknowledge and move on.
2. Not routed here, stale, or held back by a silence (:mod:`bot.notify.silences`, read with
   the marks; recorded as suppressed in the same transaction): acknowledge without sending.
3. Render its parts; for each part not yet accepted: wait for pacing, *then* write the attempt
   mark (in the script that checks the claim is still ours), send, and on acceptance write the
   part mark; the final part's mark is in the same MULTI/EXEC as the XACK.

Failures (:mod:`bot.core.retry`'s capped exponential backoff with jitter between tries):

* 429: the pacer pauses for the Retry-After; 5xx, timeouts and network errors: backoff. Both
  are retried while the destination's current run of failures is younger than
  ``retry_horizon`` (hours by default; it is kept in Redis, so a restart does not reset it);
  after that the alert is *parked* and the next alerts get one try each.
* A refusal of the destination (bot removed, token refused, webhook gone): parked at once.
  A refusal of the message itself: parked as "rejected".
* Parked alerts are kept in the ledger (``stressbot deadletters list``; ``max_parked`` at
  most). Those parked by an outage or a refusal of the destination are redelivered, in outbox
  order, as soon as a send to the destination succeeds again: the next alert, or a probe (the
  oldest parked alert, tried at growing intervals up to ``probe_interval``). Rejected ones
  wait for ``deadletters retry``.

Notes: a send whose outcome is unknown (an error answer, a connection lost after the request
went out, no answer within the timeout) leaves its attempt mark as "unknown", and every later
copy of that part says it may repeat an earlier message; so does the copy sent after a process
died with a request out (the mark then still says "sending"). A send known not to have gone
out (429, 4xx, a refused connection) removes the mark: the resend carries no note, and neither
does a first delivery that waited for pacing, because the mark is written after the wait.

The residual duplicate window: a duplicate without a note needs the attempt mark to be lost
after the request went out, which only a loss of Redis data does (a restart without
persistence, a failover to a replica that had not received the write). Everything else that
can repeat a message (lost answers, crashes, a paused process taken over) repeats it with the
note, with one exception: a process paused for longer than the lease exactly between writing
its attempt mark and its request reaching the platform sends its copy after the new owner's
noted one. That gap was measured by ``tests/test_notify_faults.py`` at ~1.5 ms (p50) and
~10 ms (p99) on a loaded two-core machine. The README has the fault suite's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bot.core.models import Alert
from bot.core.retry import Backoff, BackoffPolicy
from bot.notify.base import (
    AttachmentRejected,
    DeliveryError,
    DestinationReport,
    FormattingRejected,
    LeaseLost,
    PermanentError,
    RateLimited,
    Sender,
    TakenOver,
    TransientError,
    _Stop,
    accepts,
    entry_time,
)
from bot.notify.config import NotifyConfig, Route
from bot.notify.heartbeat import is_heartbeat
from bot.notify.heartbeat import stale as stale_heartbeat
from bot.notify.ledger import (
    AUTO_REDELIVER,
    OUTAGE,
    REJECTED,
    SENDING,
    UNAVAILABLE,
    Attempt,
    Ledger,
    Mark,
    Parked,
)
from bot.notify.silences import Silence, silencing

if TYPE_CHECKING:
    from bot.store.redis_store import Store

log = logging.getLogger("bot.notify.service")

REPEAT_NOTE = "Resent after a restart: this may repeat an earlier message."
RETRY_NOTE = "Sent again after an unconfirmed attempt: this may repeat an earlier message."
_READ_COUNT = 50


class _Park(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


class Context(Protocol):
    """What a worker uses of its :class:`~bot.notify.service.Delivery`."""

    store: Store
    ledger: Ledger
    cfg: NotifyConfig
    consumer: str
    zone: str
    clock: Callable[[], float]

    async def chart(self, alert: Alert, zone: str) -> bytes | None: ...

    async def prepare(self, worker: Worker) -> None: ...


class Worker:
    """Delivers the outbox to one destination."""

    def __init__(self, ctx: Context, sender: Sender, route: Route) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        self.sender = sender
        self.route = route
        self.name = route.name
        self.group = ctx.ledger.group(route.name)
        self.report = DestinationReport()
        d = ctx.cfg.delivery
        self.ttl = d.lease_ttl
        self.lease_until = 0.0  # monotonic; no request starts after it
        self.in_hand: str | None = None  # the alert whose claim the lease renewal extends
        self.parked_auto = 0  # parked alerts to redeliver when the destination recovers
        self.recovered = False  # a send succeeded while such alerts were parked
        self.failing = False  # the destination's last attempt failed
        self.probe = Backoff(
            BackoffPolicy(initial=min(d.probe_interval, d.backoff_max), max=d.probe_interval)
        )
        self.next_probe = 0.0  # monotonic: due at once when the worker starts
        self._standby_logged = False
        self._busy: str | None = None
        self._last_failure: float | None = None  # monotonic, this process's last failure

    @property
    def sender_zone(self) -> str:
        return self.route.timezone or self.ctx.zone

    # ---- the lease ---------------------------------------------------------------------------

    async def run(self, stop: _Stop, *, block_ms: int | None, stale_after: float) -> None:
        """Take the destination's lease, then deliver: pending entries (this consumer's and
        those taken over), parked alerts when due, then new entries until none is left
        (`block_ms` None) or `stop`."""
        await self.ctx.store.ensure_group(self.group)
        await self._acquire(stop, bounded=block_ms is None)
        renewal = asyncio.create_task(self._keep_lease(), name=f"lease:{self.name}")
        try:
            await self.ctx.prepare(self)
            await self._drain(stop, block_ms, stale_after)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            with contextlib.suppress(Exception):
                await self.ledger.release_lease(self.name, self.ctx.consumer)
            self.lease_until = 0.0

    async def _acquire(self, stop: _Stop, *, bounded: bool) -> None:
        give_up = time.monotonic() + 2 * self.ttl
        while True:
            t0 = time.monotonic()
            holder = await self.ledger.acquire_lease(self.name, self.ctx.consumer, self.ttl)
            if holder is None:
                self.lease_until = t0 + self.ttl * 0.9
                break
            if not self._standby_logged:
                log.info("%s: standing by, %s delivers to it", self.name, holder)
                self._standby_logged = True
            if bounded and time.monotonic() >= give_up:
                raise LeaseLost(f"another notifier ({holder}) is delivering to {self.name}")
            await stop.sleep(min(1.0, self.ttl / 3))
        self._standby_logged = False
        taken, gone = await self.ledger.take_over(self.name, self.ctx.consumer, 0.0)
        if taken:
            self.report.reclaimed += taken
            log.info(
                "%s: took over %d pending alert(s) from a notifier that is gone", self.name, taken
            )
        for eid in gone:
            log.error("%s: outbox entry %s was trimmed before it was delivered", self.name, eid)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            t0 = time.monotonic()
            try:
                ok = await self.ledger.renew(self.name, self.ctx.consumer, self.ttl, self.in_hand)
            except Exception as e:  # Redis away: the lease runs out, and sending stops with it
                log.warning("%s: could not renew the delivery lease (%s)", self.name, e)
                continue
            if not ok:
                log.warning("%s: lost the delivery lease to another notifier", self.name)
                self.lease_until = 0.0
                return
            self.lease_until = t0 + self.ttl * 0.9

    async def _ensure_lease(self) -> None:
        """Before a request: the lease must still be ours. When its local validity ran out
        (the renewal was late, e.g. a stalled loop) it is taken again if nobody else took it;
        the claim and mark checks of each attempt make that safe."""
        if time.monotonic() <= self.lease_until:
            return
        t0 = time.monotonic()
        holder = await self.ledger.acquire_lease(self.name, self.ctx.consumer, self.ttl)
        if holder is not None:
            raise LeaseLost(f"{self.name}: {holder} delivers to it now")
        self.lease_until = t0 + self.ttl * 0.9

    # ---- the outbox --------------------------------------------------------------------------

    async def _drain(self, stop: _Stop, block_ms: int | None, stale_after: float) -> None:
        self.failing = bool(await self.ledger.outage(self.name))
        await self.redeliver(stop, recount=True)  # counts what is parked; probes if due
        last_takeover = time.monotonic()
        while True:
            stop.check()
            await self._ensure_lease()
            pending = await self.ledger.read_pending(self.name, self.ctx.consumer, _READ_COUNT)
            if pending:
                for eid, alert in pending:
                    if not await self._one(eid, alert, stop, stale_after):
                        break  # claimed elsewhere for now: keep the outbox order, read again
                continue
            await self.redeliver(stop)
            if time.monotonic() - last_takeover > self.ttl:
                last_takeover = time.monotonic()
                taken, _ = await self.ledger.take_over(self.name, self.ctx.consumer, self.ttl)
                self.report.reclaimed += taken
            entries = await self.ctx.store.read_group(
                self.group, self.ctx.consumer, count=_READ_COUNT, block_ms=block_ms
            )
            if not entries:
                if block_ms is None:
                    return
                continue
            for eid, a in entries:
                if not await self._one(eid, a, stop, stale_after):
                    break  # the rest are pending now: read again, in order

    async def _one(self, entry_id: str, alert: Alert | None, stop: _Stop, stale: float) -> bool:
        """Handle one outbox entry; False when its alert is claimed by another process (still
        sending it, or paused): it stays pending and is looked at again shortly."""
        ledger, r = self.ledger, self.report
        if alert is None:
            log.error(
                "%s: outbox entry %s is gone from the stream; nothing to deliver",
                self.name,
                entry_id,
            )
            await ledger.ack_only(self.name, entry_id)
            return True
        if not await ledger.claim(self.name, alert.id, self.ctx.consumer, self.ttl):
            if self._busy != alert.id:
                log.info(
                    "%s: alert %s is still claimed by a notifier that stopped; waiting for "
                    "its claim to run out",
                    self.name,
                    alert.id,
                )
                self._busy = alert.id
            await stop.sleep(min(1.0, self.ttl / 3))
            return False
        self._busy = None
        self.in_hand = alert.id
        try:
            mark, attempt, silences = await ledger.lookup(self.name, alert.id)
            if mark is not None and mark.status in ("sent", "parked", "dropped"):
                await ledger.ack_only(self.name, entry_id, alert.id)
                r.already_delivered += 1
                return True
            if not accepts(self.route, alert):
                await ledger.ack_only(self.name, entry_id, alert.id)
                r.skipped += 1
                return True
            if mark is None and self._stale(alert, stale):
                await ledger.ack_only(self.name, entry_id, alert.id)
                return True
            silence = None if mark is not None else self._silence(alert, silences)
            if silence is not None:
                await ledger.ack_only(self.name, entry_id, alert.id, silenced=(alert, silence))
                return True
            try:
                if await self._deliver(alert, entry_id, entry_id, mark, attempt, stop, tries=0):
                    r.delivered += 1
                    r.latencies.append(time.time() - entry_time(entry_id))
            except TakenOver as e:
                log.info("%s; not sending it again", e)
                r.already_delivered += 1
            return True
        except BaseException:
            with contextlib.suppress(Exception):
                await ledger.release_claim(self.name, alert.id, self.ctx.consumer)
            raise
        finally:
            self.in_hand = None

    def _silence(self, alert: Alert, silences: list[Silence]) -> Silence | None:
        """The silence of `silences` holding `alert` back here (logged, counted), or None;
        never a heartbeat."""
        if is_heartbeat(alert):
            return None
        silence = silencing(silences, alert, time.time())
        if silence is not None:
            log.info(
                "%s: alert %s (rule %s) suppressed by silence %s (%s) until %s, not sent",
                self.name,
                alert.id,
                alert.rule,
                silence.id,
                silence.describe(),
                time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(silence.ends)),
            )
            self.report.muted += 1
        return silence

    def _stale(self, alert: Alert, stale: float) -> bool:
        if (stale > 0 and time.time() - alert.ts > stale) or stale_heartbeat(alert, time.time()):
            log.info(
                "%s: alert %s is older than %.0fs, acknowledged without sending",
                self.name,
                alert.id,
                stale,
            )
            self.report.stale += 1
            return True
        return False

    # ---- one alert ---------------------------------------------------------------------------

    async def _deliver(
        self,
        alert: Alert,
        entry_id: str | None,
        entry: str,
        mark: Mark | None,
        attempt: Attempt | None,
        stop: _Stop,
        *,
        tries: int,
    ) -> bool:
        """Send the parts not yet accepted; True when all were, False when it was parked.
        `entry_id` is the outbox entry to acknowledge (None for a parked alert)."""
        start = mark.parts if mark is not None else 0
        ids = list(mark.ids) if mark is not None else []
        uncertain = attempt is not None and attempt.part == start
        note = None
        if uncertain and attempt is not None:
            note = REPEAT_NOTE if attempt.state == SENDING else RETRY_NOTE
            log.warning(
                "%s: alert %s part %d may have been delivered already (%s); sending it "
                "again, marked as a possible repeat",
                self.name,
                alert.id,
                start,
                "a process stopped with the request out"
                if attempt.state == SENDING
                else "its last attempt's outcome is unknown",
            )
        elif mark is not None and mark.noted:
            note = RETRY_NOTE
        chart = await self.ctx.chart(alert, self.sender_zone) if self.route.charts else None
        parts = self.sender.render(alert, chart, note)
        led, cfg = self.ledger, self.ctx.cfg.delivery
        if start >= len(parts):  # rendered shorter than last time (e.g. the chart failed now)
            await led.record_part(
                self.name,
                alert.id,
                start,
                ids,
                final=True,
                entry_id=entry_id,
                noted=note is not None,
            )
            return True
        backoff = Backoff(BackoffPolicy(initial=cfg.backoff_base, max=cfg.backoff_max))
        i, failures, plain, no_photo = start, 0, False, False
        try:
            while i < len(parts):
                part = parts[i].without_photo() if no_photo else parts[i]
                stop.check(self.sender.gate.ready_in())
                await stop.wait(self.sender.gate.wait())
                await self._ensure_lease()
                go = await led.begin_attempt(self.name, alert.id, i, self.ctx.consumer, self.ttl)
                if go == 0:
                    raise LeaseLost(f"{self.name}: alert {alert.id} is claimed by another notifier")
                if go < 0:
                    raise TakenOver(f"{self.name}: alert {alert.id} was delivered by another")
                tries += 1
                try:
                    mid = await self.sender.send(part, plain=plain)
                except RateLimited as e:
                    await led.end_attempt(self.name, alert.id, i, unknown=uncertain)
                    self.report.rate_limited += 1
                    (self.sender.global_gate if e.global_ else self.sender.gate).pause(
                        e.retry_after
                    )
                    log.warning("%s: %s", self.name, e)
                    await self._failed(e, None)
                    continue
                except FormattingRejected as e:
                    await led.end_attempt(self.name, alert.id, i, unknown=uncertain)
                    if plain:
                        raise _Park(REJECTED, str(e)) from None
                    log.warning("%s: formatting rejected (%s); sending plain text", self.name, e)
                    plain = True
                    self.report.fallbacks += 1
                    continue
                except AttachmentRejected as e:
                    await led.end_attempt(self.name, alert.id, i, unknown=uncertain)
                    if part.photo is None:
                        raise _Park(REJECTED, str(e)) from None
                    log.warning("%s: chart rejected (%s); sending the text alone", self.name, e)
                    no_photo = True
                    self.report.fallbacks += 1
                    continue
                except TransientError as e:
                    await led.end_attempt(self.name, alert.id, i, unknown=uncertain or e.maybe_sent)
                    if e.maybe_sent and not uncertain:
                        uncertain = True
                        note = note or RETRY_NOTE
                        parts = self.sender.render(alert, chart, note)
                    failures += 1
                    delay = backoff.next_delay()
                    await self._failed(e, failures)
                    self.report.retries += 1
                    log.warning("%s: %s; retry %d in %.1fs", self.name, e, failures, delay)
                    await stop.sleep(delay)
                    continue
                except PermanentError as e:
                    await led.end_attempt(self.name, alert.id, i, unknown=uncertain)
                    raise _Park(UNAVAILABLE if e.destination else REJECTED, str(e)) from None
                self.report.messages += 1
                if uncertain:
                    self.report.may_repeat += 1
                ids.append(mid)
                await self._succeeded()
                await led.record_part(
                    self.name,
                    alert.id,
                    i + 1,
                    ids,
                    final=i == len(parts) - 1,
                    entry_id=entry_id,
                    noted=note is not None,
                )
                i, failures, plain, no_photo, uncertain = i + 1, 0, False, False, False
                backoff.reset()
        except _Park as p:
            now_mark = Mark("partial", i, ids, note is not None)
            dropped = await led.park(
                self.name,
                alert,
                entry_id=entry_id,
                entry=entry,
                reason=p.reason,
                error=p.error,
                tries=tries,
                mark=now_mark,
                now=self.ctx.clock(),
                max_parked=cfg.max_parked,
            )
            self._parked(alert, p, tries, again=entry_id is None)
            if dropped:  # over max_parked: the oldest went to the dead-letter log
                self.report.parked_dropped += len(dropped)
                log.error(
                    "%s: %d parked alerts at most: dropped the oldest, %s",
                    self.name,
                    cfg.max_parked,
                    ", ".join(dropped),
                )
            return False
        return True

    async def _failed(self, e: DeliveryError, failures: int | None) -> None:
        """Count a failure against the horizon (and `max_attempts`); raises _Park when the
        destination has been failing for too long."""
        self.failing, self.recovered = True, False
        now = self.ctx.clock()
        cfg = self.ctx.cfg.delivery
        # While a destination is down it is tried at least every backoff_max (an alert in
        # hand) or probe_interval (only parked ones); a longer silence ends the run. Within
        # this process that is timed on the monotonic clock; against the run recorded by an
        # earlier process, on the wall clock.
        gap = 2 * max(cfg.backoff_max, cfg.probe_interval) + cfg.request_timeout
        mono = time.monotonic()
        continuing = self._last_failure is not None and mono - self._last_failure <= gap
        self._last_failure = mono
        since = await self.ledger.outage_begin(
            self.name, now, str(e), gap=gap, continuing=continuing
        )
        if now - since >= cfg.retry_horizon:
            raise _Park(
                OUTAGE, f"{e} (failing for {now - since:.0f}s, horizon {cfg.retry_horizon:.0f}s)"
            )
        if failures is not None and cfg.max_attempts is not None and failures >= cfg.max_attempts:
            raise _Park(OUTAGE, f"{e} (after {failures} attempts)")

    async def _succeeded(self) -> None:
        self._last_failure = None
        if self.failing:
            await self.ledger.outage_end(self.name)
            self.failing = False
        self.probe.reset()
        if self.parked_auto > 0:
            self.recovered = True

    def _parked(self, alert: Alert, p: _Park, tries: int, *, again: bool) -> None:
        auto = p.reason in AUTO_REDELIVER
        if not again:
            self.report.parked += 1
            if auto:
                self.parked_auto += 1
        if auto and self.next_probe <= time.monotonic():
            self.next_probe = time.monotonic() + self.probe.next_delay()
        log.error(
            "%s: alert %s parked (%s) after %d attempt(s): %s; %s",
            self.name,
            alert.id,
            p.reason,
            tries,
            p.error,
            "redelivered when the destination accepts messages again"
            if auto
            else "redeliver it with: stressbot deadletters retry",
        )

    # ---- parked alerts -------------------------------------------------------------------------

    async def redeliver(self, stop: _Stop, *, recount: bool = False) -> None:
        """Redeliver parked alerts that are due: all of them (but the rejected) once the
        destination accepted a message again, the oldest one as a probe when a probe is due,
        and those an operator asked for. An alert whose rule is muted now stays parked until
        the silence ends. The parked hash is only read when something may be due."""
        probe_due = time.monotonic() >= self.next_probe
        nothing_due = self.parked_auto <= 0 or not (self.recovered or probe_due)
        if not recount and nothing_due and not await self.ledger.retry_requested(self.name):
            self.recovered = False
            return
        records = await self.ledger.parked(self.name)
        self.parked_auto = sum(1 for p in records if p.reason in AUTO_REDELIVER)
        silences = await self.ledger.silences.active()
        probe = self.parked_auto > 0 and not self.recovered and probe_due
        for rec in records:
            if not (rec.retry or (rec.reason in AUTO_REDELIVER and (self.recovered or probe))):
                continue
            if rec.alert is not None and stale_heartbeat(rec.alert, time.time()):
                await self.ledger.drop(self.name, [rec.alert_id], why="dropped: stale heartbeat")
                continue
            if rec.alert is not None and silencing(silences, rec.alert, time.time()):
                continue
            if await self._redeliver_one(rec, stop):
                self.report.redelivered += 1
                if rec.reason in AUTO_REDELIVER:
                    self.parked_auto -= 1
            elif probe and not self.recovered:  # still down: probe again later
                probe = False
                self.next_probe = time.monotonic() + self.probe.next_delay()
        self.recovered = False

    async def _redeliver_one(self, rec: Parked, stop: _Stop) -> bool:
        if rec.alert is None:
            log.error(
                "%s: parked alert %s cannot be read; see deadletters list", self.name, rec.alert_id
            )
            return False
        if not await self.ledger.claim(self.name, rec.alert_id, self.ctx.consumer, self.ttl):
            return False
        self.in_hand = rec.alert_id
        try:
            mark, attempt, _ = await self.ledger.lookup(self.name, rec.alert_id)
            log.info(
                "%s: redelivering parked alert %s (%s)",
                self.name,
                rec.alert_id,
                "asked for" if rec.retry else rec.reason,
            )
            return await self._deliver(
                rec.alert, None, rec.entry, mark, attempt, stop, tries=rec.tries
            )
        except TakenOver as e:
            log.info("%s; not sending it again", e)
            return False
        except BaseException:
            with contextlib.suppress(Exception):
                await self.ledger.release_claim(self.name, rec.alert_id, self.ctx.consumer)
            raise
        finally:
            self.in_hand = None
