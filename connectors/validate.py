"""Per-feed validation of incoming ticks: anything dubious is counted, logged and dropped.

Reasons (keys of the feed record's `dropped`): ``malformed`` (not JSON / wrong shape),
``missing_field``, ``nan``, ``non_positive``, ``future`` (stamped further ahead than
`max_future`), ``too_old`` (further back than `max_past`), ``duplicate`` (same time and value
as the previous tick of the symbol), ``out_of_order`` (older than the previous tick of the
symbol). Nothing here is fatal. The single-wild-print filter is the engine's, not ours.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from connectors.health import FeedHealth

log = logging.getLogger(__name__)

_LOG_EVERY = 10.0  # seconds between log lines for one (feed, reason) after the first


class TickValidator:
    __slots__ = ("_clock", "_last", "_logged", "health", "max_future", "max_past")

    def __init__(
        self,
        health: FeedHealth,
        max_future: float,
        max_past: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.health = health
        self.max_future = max_future
        self.max_past = max_past
        self._clock = clock
        self._last: dict[str, tuple[float, float]] = {}
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last log time, count then)

    def accept(self, symbol: str, ts: float, value: float, now: float) -> bool:
        """True if the tick may go on; otherwise it has been counted and logged."""
        if not math.isfinite(value):
            return self.drop("nan", f"{symbol} value {value!r}")
        if value <= 0.0:
            return self.drop("non_positive", f"{symbol} value {value!r}")
        if not math.isfinite(ts):
            return self.drop("malformed", f"{symbol} timestamp {ts!r}")
        if ts > now + self.max_future:
            return self.drop("future", f"{symbol} stamped {ts - now:.1f}s ahead")
        if self.max_past and ts < now - self.max_past:
            return self.drop("too_old", f"{symbol} stamped {now - ts:.1f}s ago")
        last = self._last.get(symbol)
        if last is not None:
            lts, lv = last
            if ts < lts:
                return self.drop("out_of_order", f"{symbol} at {ts!r} after {lts!r}")
            if ts == lts and value == lv:
                return self.drop("duplicate", f"{symbol} {value!r} at {ts!r}")
        self._last[symbol] = (ts, value)
        return True

    def last_ts(self, symbol: str) -> float | None:
        last = self._last.get(symbol)
        return None if last is None else last[0]

    def drop(self, reason: str, what: str) -> bool:
        """Count and (rate-limited) log one dropped message. Always returns False."""
        h = self.health
        h.dropped[reason] += 1
        count = h.dropped[reason]
        now = self._clock()
        prev = self._logged.get(reason)
        if prev is None or now - prev[0] >= _LOG_EVERY:
            since = "" if prev is None else f", {count - prev[1]} since the last line"
            log.warning(
                "feed %s: dropped %s: %s (%d %s so far%s)",
                h.name,
                reason,
                what[:200],
                count,
                reason,
                since,
            )
            self._logged[reason] = (now, count)
        return False
