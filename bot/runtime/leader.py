"""One active engine at a time: the engine lease in Redis, held by the leader, waited for by
the standbys.

The lease is ``{prefix}:engine:lease`` (see :mod:`bot.store.redis_store`): taken when free
with a new fencing token (``INCR``, then ``SET ... PX ttl``: ``SET NX PX`` semantics inside
one script), renewed every ``ttl / 5`` (well inside its expiry: four renewals may fail before
it lapses), released on a clean stop so a standby takes over at once. Every commit of the
leader carries the lease value and is refused by Redis (:class:`~bot.store.redis_store.
FencedOut`) once the lease is another's, so a leader paused past its TTL (SIGSTOP, a VM
freeze) writes nothing after the takeover: not a checkpoint, an alert, a rule state, a chart
point (all one fenced script) nor its status record (a fenced ``SET``); it notices, drops its
in-memory state and stands by. Locally the leader also stops committing once its own view of
the lease (the monotonic time of the last successful renewal plus the TTL) has run out.

Standbys try to take the lease every ~0.5 s (jittered) and record themselves in
``{prefix}:engine:standby`` (shown by `stressbot feeds`, /readyz and the
``stressbot_engine_leader`` gauge). A leader killed with ``kill -9`` is replaced within one
TTL plus one standby poll; the new leader resumes from the last checkpoint, and alerts raised
after it are raised again once (the checkpoint and the outbox are written together).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid

from bot.core.errors import StressbotError
from bot.core.retry import sleep_or_stop
from bot.store.redis_store import Store

log = logging.getLogger(__name__)

LEASE_TTL = 5.0  # seconds: a dead leader is replaced within about this long
STANDBY_POLL = 0.5  # seconds between a standby's attempts to take the lease
STANDBY_REPORT = 2.0  # seconds between a standby's status records
CALL_TIMEOUT = 2.0  # seconds: one lease call to Redis


class LeaseLost(StressbotError):
    """This engine no longer holds the engine lease."""


def owner_name() -> str:
    """A name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class EngineLease:
    """The engine lease as one engine sees it."""

    def __init__(self, store: Store, owner: str | None = None, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.owner = owner or owner_name()
        self.ttl = ttl
        self.value: str | None = None  # "token:owner" while we hold it
        self.valid_until = 0.0  # monotonic: our own view of when it lapses
        self.lost = asyncio.Event()
        self.paused = False  # fault tests: renew nothing, as a SIGSTOPped process would
        self.holder: str | None = None  # the leader's lease value, while we stand by
        self.acquired = 0  # times this engine became the leader

    @property
    def renew_every(self) -> float:
        return self.ttl / 5

    def holds(self) -> bool:
        """Whether this engine holds the lease, by its own view of it."""
        return (
            self.value is not None
            and not self.lost.is_set()
            and time.monotonic() <= self.valid_until
        )

    def check(self) -> str:
        """The lease value to fence a commit with; LeaseLost when ours has run out."""
        if self.value is None or not self.holds():
            raise LeaseLost(f"the engine lease of {self.owner} ran out or was taken")
        return self.value

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Stand by until this engine holds the lease (True) or `stop` is set (False)."""
        last_report = -float("inf")
        announced = False
        while not stop.is_set():
            t0 = time.monotonic()
            ours, holder = await asyncio.wait_for(
                self.store.acquire_engine_lease(self.owner, self.ttl), CALL_TIMEOUT
            )
            if ours is not None:
                self.value, self.valid_until, self.holder = ours, t0 + self.ttl, None
                self.lost.clear()
                self.acquired += 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.store.set_engine_standby(self.owner, None), CALL_TIMEOUT
                    )
                log.info("engine: leader (lease %s)", ours)
                return True
            self.holder = holder
            if not announced:
                log.info("engine: standing by; the active engine is %s", holder)
                announced = True
            if t0 - last_report >= STANDBY_REPORT:
                last_report = t0
                record = {"leader": holder, "updated": time.time(), "role": "standby"}
                await asyncio.wait_for(
                    self.store.set_engine_standby(self.owner, record), CALL_TIMEOUT
                )
            await sleep_or_stop(stop, STANDBY_POLL * (0.5 + random.random()))
        return False

    async def keep(self) -> None:
        """Renew the lease until it is lost (then `lost` is set); run as a task, cancelled
        when the engine stops leading. A failed renewal (Redis down) is retried at the next
        beat; the lease counts as lost once our own view of it has run out."""
        while True:
            await asyncio.sleep(self.renew_every)
            if self.paused or self.value is None:
                continue
            t0 = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the inner call completes, and this task then never ends
                # (seen as a hung shutdown; cpython gh-86296)
                async with asyncio.timeout(self.renew_every):
                    ok: bool | None = await self.store.renew_engine_lease(self.value, self.ttl)
            except Exception as e:
                log.warning("engine: lease renewal failed (%s: %s)", type(e).__name__, e)
                ok = None
            if ok:
                self.valid_until = t0 + self.ttl
            elif ok is False or time.monotonic() > self.valid_until:
                log.warning("engine: the engine lease %s was lost", self.value)
                self.lost.set()
                return

    def drop(self) -> None:
        """Forget the lease (it was lost)."""
        self.value = None
        self.lost.set()

    async def release(self) -> None:
        """Give the lease up (a clean stop), so a standby takes over at once."""
        value, self.value = self.value, None
        if value is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.release_engine_lease(value), CALL_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.set_engine_standby(self.owner, None), CALL_TIMEOUT)
