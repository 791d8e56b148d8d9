"""Several feeds, one canonical symbol: the combiner decides what is written.

- ``median``: each accepted tick updates its source's latest value; the combined tick is the
  median of the sources that ticked within `max_age`, written at that tick's time.
- ``failover``: sources in priority order; a tick is written only when its source is the
  first live one (ticked within `max_age`). When the primary goes quiet, the next takes over;
  when it comes back, it takes over again.

A source counts as live only while its feed is healthy too (`healthy(source)`, from the
feed's health state: a feed that is down, stale or refused from this location is skipped at
once instead of after `max_age`), so when a symbol's default source goes down the next one in
the priority order takes over with its next tick. :meth:`Combiner.serving` says which
source(s) serve the symbol now; the supervisor puts that into each feed's health record, and
`stressbot feeds` shows it per symbol.

Combined event times never go backwards: a tick from a source whose clock is a little behind
is written at the previous combined time; one further behind (a slower daily source repeating
an older observation) is not written. `source` names the origin: the feed for failover,
``median(a,b)`` with the sources used for the median.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

from bot.core.models import Tick
from connectors.config import CombineConfig

_CLAMP = 1.0  # seconds: a source this far behind the combined time is clamped, not dropped


class Combiner:
    __slots__ = (
        "_clock",
        "_healthy",
        "_last_ts",
        "_last_value",
        "_latest",
        "_median_names",
        "max_age",
        "mode",
        "sources",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        config: CombineConfig,
        sources: list[str],
        clock: Callable[[], float],
        healthy: Callable[[str], bool] | None = None,
    ) -> None:
        self.symbol = symbol
        self.mode = config.mode
        self.max_age = config.max_age
        self.sources = list(config.sources) or list(sources)
        self._clock = clock
        self._healthy = healthy or (lambda _source: True)
        self._latest: dict[str, tuple[float, float]] = {}  # source -> (wall time, value)
        self._last_ts = float("-inf")
        self._last_value = float("nan")
        self._median_names: dict[tuple[str, ...], str] = {}

    def update(self, source: str, ts: float, value: float, now: float) -> Tick | None:
        if source not in self.sources:
            return None
        self._latest[source] = (now, value)
        if ts < self._last_ts:
            if self._last_ts - ts > _CLAMP:
                return None  # older than what was written (e.g. a slower daily source)
            ts = self._last_ts  # exchange clocks a little apart: keep time monotonic
        if ts == self._last_ts and value == self._last_value:
            return None  # the same observation from a second source
        if self.mode == "failover":
            for s in self.sources:
                if s == source:
                    break
                if self._live(s, now):
                    return None  # a higher-priority source is live
            self._last_ts, self._last_value = ts, value
            return Tick(ts, self.symbol, value, source)
        live = [
            (s, v)
            for s, (w, v) in self._latest.items()
            if now - w <= self.max_age and (s == source or self._healthy(s))
        ]
        if len(live) == 1:
            out = value
            name = source
        else:
            out = float(median(v for _, v in live))
            key = tuple(sorted(s for s, _ in live))
            name = self._median_names.get(key) or self._median_names.setdefault(
                key, f"median({','.join(key)})"
            )
        self._last_ts, self._last_value = ts, out
        return Tick(ts, self.symbol, out, name)

    def _live(self, source: str, now: float) -> bool:
        seen = self._latest.get(source)
        return seen is not None and now - seen[0] <= self.max_age and self._healthy(source)

    def serving(self, now: float) -> list[str]:
        """The source(s) whose ticks are written now: the first live one in priority order
        (failover) or every live one (median); empty when none is live."""
        live = [s for s in self.sources if self._live(s, now)]
        return live[:1] if self.mode == "failover" else live
