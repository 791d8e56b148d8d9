"""Several feeds, one canonical symbol: the combiner decides what is written.

- ``median``: each accepted tick updates its source's latest value; the combined tick is the
  median of the sources that ticked within `max_age`, written at that tick's time.
- ``failover``: sources in priority order; a tick is written only when its source is the
  first live one (ticked within `max_age`). When the primary goes quiet, the next takes over;
  when it comes back, it takes over again.

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
        self, symbol: str, config: CombineConfig, sources: list[str], clock: Callable[[], float]
    ) -> None:
        self.symbol = symbol
        self.mode = config.mode
        self.max_age = config.max_age
        self.sources = list(config.sources) or list(sources)
        self._clock = clock
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
                seen = self._latest.get(s)
                if seen is not None and now - seen[0] <= self.max_age:
                    if s != source:
                        return None  # a higher-priority source is live
                    break
            self._last_ts, self._last_value = ts, value
            return Tick(ts, self.symbol, value, source)
        live = [(s, v) for s, (w, v) in self._latest.items() if now - w <= self.max_age]
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
