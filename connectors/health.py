"""Per-feed health: state machine, counters and the record written to Redis.

States (the `state` field of a feed record in ``{prefix}:feeds``):

- ``starting``: configured, no data yet.
- ``ok``: data flowing.
- ``stale``: connected (or polling) but no data for longer than the feed's `stale_after`
  while its market is open; the watchdog also reconnects.
- ``down``: cannot connect, the connection dropped, or the source answers with errors.
- ``closed``: the market is closed (weekend, holiday, daily halt): quiet is expected.

A ``down`` feed whose source refuses this location (HTTP 451/403, e.g. Binance from the US)
also has ``unavailable: true``; it is retried only every ``feeds.unavailable_retry``.

``serving`` lists the canonical symbols whose written ticks currently come from this feed
(alone, or as one source of a median); ``standby`` those it delivers but another, higher
priority source serves now (failover). `stressbot feeds` shows per symbol who is serving.
``ticks`` counts the accepted ticks, ``symbol_ticks`` the same per canonical symbol (the
``stressbot_feed_symbol_ticks_total`` metric).

The engine turns transitions into routed feed-health alerts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

State = Literal["starting", "ok", "stale", "down", "closed"]
STATES: tuple[State, ...] = ("starting", "ok", "stale", "down", "closed")

log = logging.getLogger(__name__)


class FeedHealth:
    """Counters and state of one feed. Cheap to update on the hot path."""

    __slots__ = (
        "_clock",
        "_on_change",
        "detail",
        "dropped",
        "errors",
        "kind",
        "last_msg_wall",
        "last_tick_ts",
        "last_tick_wall",
        "msgs",
        "name",
        "serving",
        "since",
        "skipped",
        "standby",
        "state",
        "symbol_ticks",
        "ticks",
        "unavailable",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[FeedHealth], None] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self._clock = clock
        self._on_change = on_change
        self.state: State = "starting"
        self.since = clock()
        self.detail = "starting"
        self.msgs = 0
        self.ticks = 0
        self.symbol_ticks: Counter[str] = Counter()  # accepted ticks per canonical symbol
        self.errors = 0
        self.dropped: Counter[str] = Counter()
        self.last_tick_ts: float | None = None  # event time of the newest accepted tick
        self.last_tick_wall: float | None = None  # wall clock when it arrived
        self.last_msg_wall: float | None = None  # wall clock of the newest message of any kind
        self.unavailable = False  # the source refuses this location (451/403)
        self.serving: list[str] = []  # symbols whose written ticks come from this feed now
        self.standby: list[str] = []  # symbols it delivers while another source serves them
        self.skipped: dict[str, str] = {}  # venue symbol -> why the venue refuses it here

    def set_state(self, state: State, detail: str) -> None:
        """Move to `state`; a change is logged and reported at once, not at the next interval."""
        if state == self.state:
            self.detail = detail
            return
        old = self.state
        self.state = state
        if state == "ok":
            self.unavailable = False
        self.since = self._clock()
        self.detail = detail
        level = logging.INFO if state in ("ok", "closed", "starting") else logging.WARNING
        log.log(level, "feed %s: %s -> %s (%s)", self.name, old, state, detail)
        if self._on_change is not None:
            self._on_change(self)

    def record(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since,
            "last_tick_ts": self.last_tick_ts,
            "last_tick_age": (
                None if self.last_tick_wall is None else self._clock() - self.last_tick_wall
            ),
            "msgs": self.msgs,
            "ticks": self.ticks,
            "symbol_ticks": dict(self.symbol_ticks),
            "errors": self.errors,
            "dropped": dict(self.dropped),
            "detail": self.detail,
            "kind": self.kind,
            "unavailable": self.unavailable,
            "serving": list(self.serving),
            "standby": list(self.standby),
            "skipped": dict(self.skipped),
            "updated": self._clock(),
        }
