"""The rule engine: ticks in, alerts out, all on event time.

The engine is a pure in-memory state machine; it does no I/O. Runners (replay, live) feed it
ticks, take the alerts it raises, and persist its `snapshot()` with the input position.

Event time: the clock is the newest tick time seen. When a tick arrives with a newer time,
the rules are evaluated at the current clock first (every tick of that instant is in), then
the clock moves on. So replay and live see the same thing, and `for` and cooldowns mean the
same in both.

Rule life cycle (as in Prometheus alerting rules)::

    inactive --condition true--> pending --true for `for`--> firing --false--> inactive
                                   ^----------false-----------'      (resolved message)

A firing alert is sent unless the rule sent one less than `cooldown` ago; an episode that
starts inside the cooldown is absorbed silently (and not resolved either) unless it is worse
than the message last sent. An unknown condition (missing data) changes nothing. Escalation,
reminders, `keep_firing_for`, "no news is no resolution", inhibition and the chart points an
alert carries are `bot.engine.lifecycle`.

Observation identity: a tick equal to the one held for its symbol and time is a duplicate and
changes nothing (nothing is marked dirty, no derived point is made). Derived series are
stamped at their inputs' times (`bot.engine.derived`).

Gaps: when no tick at all arrives for longer than `gap_after` of event time, or a runner says
input was lost (`mark_gap`), the span is recorded; window functions never compare across it
(`bot.engine.series`).

Determinism: everything that decides future output is in `snapshot()` (series with their
bars, rule states, the evaluation, maintenance and derivation bookkeeping, gaps); the session
caches are pure memos that are invalidated whenever a series they read changes. So a restore
at any tick gives the same alerts, byte for byte, as a run that never stopped.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import orjson

from bot.core.models import INPUT_SYMBOLS, SYMBOLS, Alert, Kind, PageWrite, iso_utc
from bot.engine.config import EngineConfig, SessionConfig
from bot.engine.derived import (
    SOFR_IORB_LAG,
    USDX_CONSTANT,
    USDX_LEG_MAX_AGE,
    USDX_LEGS,
    derived_inputs,
    rebuild_spread,
    rebuild_usdx,
    usdx,
)
from bot.engine.episodes import library_for
from bot.engine.lifecycle import Lifecycle
from bot.engine.pages import PagesError, SeriesPages, read_pages
from bot.engine.rulefile import Rule, RuleSet
from bot.engine.rulelang import EvalContext
from bot.engine.series import ABSORBED, BAR, CORRECTED, DUPLICATE, LATE, Series
from bot.engine.sessions import Session, SessionReturns, sessions_from_config
from bot.engine.state import EngineStats, RuleState, inf_or, num, stats_from_json, stats_json
from bot.engine.stress import STRESS_LOOKBACK

__all__ = [
    "SOFR_IORB_LAG",
    "USDX_CONSTANT",
    "USDX_LEGS",
    "USDX_LEG_MAX_AGE",
    "Engine",
    "EngineStats",
    "RuleState",
    "usdx",
]

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0

WILD_PRINT_GAP = 300.0  # only ticks this close together can be wild prints; bars are not
REEVALUATE_EVERY = HOUR  # a rule whose inputs are quiet is still re-evaluated this often
COMPACT_AFTER = 2 * HOUR  # history older than this is kept as 5-minute bars
COMPACT_RESOLUTION = BAR
MAINTAIN_EVERY = HOUR  # trim and compact the series this often (event time),
MAINTAIN_GROWTH = 256  # once this many ticks were taken since the last time (repeats aside)
MIN_RETENTION = 2 * DAY  # history kept for symbols no rule looks at (status, charts)
# The store's chart series (what /chart, /status, /sessions and a chart for an alert without
# points of its own read; an alert's chart comes from the engine's series): the longest
# reader, /sessions over 30 days with 5 days of yields before them, at one point a minute, so
# a live BTC feed printing every second keeps 57,600 points, not 31 million a year.
STORE_KEEP = 40 * DAY
STORE_RESOLUTION = 60.0  # seconds: at most one stored point per symbol in each
GAP_AFTER = 5 * DAY  # no tick at all for this long is missing input, not a quiet market
# the session memos older than the longest retention are dropped this often (event time): a
# scan of every cached session, so not daily; they hold a month more at most
FORGET_EVERY = 30 * DAY


class Engine:
    def __init__(
        self,
        rules: RuleSet,
        sessions: dict[str, Session],
        *,
        wild_print_pct: float = 15.0,
        evaluate_every: float = 1.0,
        gap_after: float = GAP_AFTER,
    ) -> None:
        self.rules = rules.rules
        self._gaps: list[tuple[float, float]] = []  # shared by every series
        self.series: dict[str, Series] = {s: Series(s, k, self._gaps) for s, k in SYMBOLS.items()}
        self.sessions = SessionReturns(sessions)
        self.ctx = EvalContext(self.series, self.sessions)
        self.clock = -math.inf
        self.first_clock = -math.inf  # event time of the first tick ever taken
        self.evaluate_from = -math.inf  # replay --from: earlier instants only warm the windows
        self.states: dict[str, RuleState] = {r.id: RuleState() for r in self.rules}
        self.stats = EngineStats()
        self.ticks = 0  # kept outside `stats` for the hot path; see `snapshot`
        self.wild_print_pct = wild_print_pct
        self.evaluate_every = evaluate_every  # seconds of event time between evaluations
        self.gap_after = gap_after
        self._last_eval = -math.inf
        self._last_input = -math.inf  # newest tick time (the clock may be ahead of it, live)
        self._held: dict[str, tuple[float, float, str]] = {}  # symbol -> unconfirmed tick
        # symbol -> earliest time changed since the last evaluation
        self._dirty: dict[str, float] = {}
        self.pending: list[Alert] = []  # raised and not yet taken by the runner
        self._last_trim = -math.inf
        self._last_forget = -math.inf
        self._ticks_at_trim = 0  # ticks taken, duplicates not counted, at the last trim
        self._bars_before = -math.inf  # points older than this are bars
        self._usdx_missing: frozenset[str] | None = None
        self._usdx_legs = [(name, self.series[name]) for name in USDX_LEGS]
        lookback = rules.lookback
        for sym, w in STRESS_LOOKBACK.items():  # the stress gauge in every alert reads these
            lookback[sym] = max(lookback.get(sym, 0.0), w)
        ret = {s: max(lookback.get(s, 0.0) + DAY, MIN_RETENTION) for s in SYMBOLS}
        for leg in USDX_LEGS:  # inputs are kept as long as what is derived from them
            ret[leg] = max(ret[leg], ret["USDX"])
        ret["SOFR"] = max(ret["SOFR"], ret["SOFR-IORB"])
        ret["IORB"] = max(ret["IORB"], ret["SOFR-IORB"] + SOFR_IORB_LAG)
        self._retention = ret
        self.episodes = library_for(rules.files)  # 'how much like 312' in every alert
        self._inputs = {r.id: frozenset(r.inputs) | derived_inputs(r.inputs) for r in self.rules}
        prices = frozenset(s for s, k in INPUT_SYMBOLS.items() if k is Kind.PRICE)
        self._holdable = prices if wild_print_pct else frozenset()
        self.life = Lifecycle(
            self.rules, rules.inhibits, self.states, self.ctx, self.series, self.pending
        )
        self.life.episodes = self.episodes
        self.pages = SeriesPages()  # what the store holds of the series (`checkpoint`)

    # ---- input ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, rules: RuleSet, engine: EngineConfig, sessions: Mapping[str, SessionConfig]
    ) -> Engine:
        """The engine as live, replay and rule tests all build it: one place, one behaviour."""
        return cls(
            rules,
            sessions_from_config(sessions),
            wild_print_pct=engine.wild_print_pct,
            evaluate_every=engine.evaluate_every,
            gap_after=engine.gap_after,
        )

    def add(self, ts: float, symbol: str, value: float, source: str = "") -> None:
        """Take one tick. Evaluates the rules first if it moves the clock forward."""
        if ts > self.clock:
            if ts - self._last_input > self.gap_after and self._last_input > -math.inf:
                self._add_gap(self._last_input, ts)
            if self.clock == -math.inf:
                self.first_clock = ts
            self._step()
            self.clock = self._last_input = ts
        elif ts > self._last_input:
            if ts - self._last_input > self.gap_after and self._last_input > -math.inf:
                self._add_gap(self._last_input, ts)
            self._last_input = ts
        self.ticks += 1
        series = self.series[symbol]
        tss = series.ts
        if tss and ts > tss[-1]:
            last = tss[-1]
            if symbol in self._holdable and (
                symbol in self._held
                or (
                    ts - last < WILD_PRINT_GAP
                    and abs(value / series.values[-1] - 1.0) * 100.0 > self.wild_print_pct
                )
            ):
                self._hold(series, ts, value, source)
                return
            # the common case, inlined: a new second, after the last evaluation
            if ts > self._last_eval and (ts - last >= 1.0 or ts // 1.0 != last // 1.0):
                tss.append(ts)
                series.values.append(value)
                if symbol not in self._dirty:
                    self._dirty[symbol] = ts
                return
        self._put(series, ts, value)

    def _hold(self, series: Series, ts: float, value: float, source: str) -> None:
        """A single wild print is held until the next tick confirms or refutes it."""
        symbol = series.symbol
        held = self._held.get(symbol)
        if held is not None and held[0] == ts and held[1] == value:
            self.stats.duplicates += 1  # the held tick again: it confirms nothing
            return
        held = self._held.pop(symbol, None)
        if held is not None:
            if abs(value / held[1] - 1.0) * 100.0 <= self.wild_print_pct:
                self._put(series, held[0], held[1])  # confirmed: the market really moved
            else:
                self.stats.wild_prints += 1
                log.info(
                    "dropped a wild print of %s: %s at %s from %s (not confirmed)",
                    symbol,
                    held[1],
                    iso_utc(held[0]),
                    held[2] or "?",
                )
        last = series.last()
        if (
            last is not None
            and series.ts
            and ts - series.ts[-1] < WILD_PRINT_GAP
            and abs(value / last - 1.0) * 100.0 > self.wild_print_pct
        ):
            self._held[symbol] = (ts, value, source)
        else:
            self._put(series, ts, value)

    def _put(self, series: Series, ts: float, value: float) -> None:
        sym = series.symbol
        if ts < self.clock - self._retention[sym]:
            self.stats.too_old += 1  # older than any window looks: it would only be trimmed
            return
        how = series.add(ts, value)
        if how == DUPLICATE:
            self.stats.duplicates += 1
            return
        if how in (LATE, ABSORBED):
            self.stats.late += 1
            if how == ABSORBED:
                self.stats.unchanged += 1
                return
        elif how == CORRECTED:
            self.stats.corrections += 1
        if ts <= self._last_eval:
            series.edits += 1  # what was evaluated before may read this point
        d = self._dirty.get(sym)
        if d is None or ts < d:
            self._dirty[sym] = ts

    def finish(self) -> list[Alert]:
        """Evaluate at the final clock (end of input) and return every alert not yet taken."""
        if self._dirty:
            self._step(force=True)
        return self.take_alerts()

    def advance_to(self, now: float) -> None:
        """Move the clock to `now` without a tick (live: time passes while markets are quiet;
        the live loop calls this only once it has read every tick in the stream)."""
        if now > self.clock:
            self._step()
            self.clock = now

    def mark_gap(self, start: float, end: float) -> None:
        """Record that input between `start` and `end` is missing (e.g. ticks trimmed from
        the stream while the engine was down): no window compares across it."""
        if end > start:
            self._add_gap(start, end)

    def _add_gap(self, start: float, end: float) -> None:
        gaps = self._gaps
        merged = [(start, end)]
        keep = []
        for g in gaps:
            if g[1] < merged[0][0] or g[0] > merged[0][1]:
                keep.append(g)
            else:
                merged[0] = (min(g[0], merged[0][0]), max(g[1], merged[0][1]))
        gaps[:] = sorted(keep + merged)  # in place: every series holds this list
        self.stats.gaps += 1
        log.info(
            "input missing from %s to %s: no window compares across it", *map(iso_utc, merged[0])
        )
        for sym, s in self.series.items():
            s.edits += 1
            if s.ts:
                self._dirty.setdefault(sym, math.inf)  # re-evaluate, nothing to recompute

    def gaps(self) -> list[tuple[float, float]]:
        """The spans of missing input recorded (oldest first)."""
        return list(self._gaps)

    def dirty_symbols(self) -> set[str]:
        """Symbols changed since the last evaluation."""
        return set(self._dirty)

    @property
    def last_input(self) -> float:
        """Event time of the newest tick taken (the clock may be ahead of it live)."""
        return self._last_input

    def queue(self, alerts: list[Alert]) -> None:
        """Queue alerts again that were taken and not committed (they were decided on)."""
        self.pending.extend(alerts)

    def raise_external(self, alerts: list[Alert]) -> None:
        """Alerts raised outside the rules (feed health): through the rules' inhibitions
        (`bot.engine.lifecycle`), then committed like any other."""
        self.life.raise_external(alerts, self.stats)

    def take_alerts(self) -> list[Alert]:
        """Hand over the raised alerts (the `pending` list is emptied in place)."""
        out = self.pending[:]
        self.pending.clear()
        return out

    # ---- evaluation -----------------------------------------------------------------------

    def _step(self, force: bool = False) -> None:
        """Evaluate at the current clock: at most once per `evaluate_every` of event time
        (changes wait in the dirty set), so a busy live feed is not evaluated per tick."""
        now = self.clock
        if now == -math.inf or (now - self._last_eval < self.evaluate_every and not force):
            return
        before = self._last_eval
        self._last_eval = now
        dirty = self._dirty
        if dirty:
            self._update_derived(now, before, dirty)
        ctx = self.ctx
        ctx.now = now
        if now >= self.evaluate_from:
            states, inputs = self.states, self._inputs
            keys = dirty.keys()
            for rule in self.rules:
                st = states[rule.id]
                changed = not keys.isdisjoint(inputs[rule.id])
                if (
                    st.state == "inactive"
                    and st.last_eval is not None
                    and now - st.last_eval < REEVALUATE_EVERY
                    and not changed
                    and not rule.condition.uses_clock
                ):
                    continue
                self._evaluate(rule, st, now, changed)
            self.life.end_step(now, self.stats)
        self._dirty = {}
        if now - self._last_trim >= MAINTAIN_EVERY and (
            self._ticks_taken() - self._ticks_at_trim >= MAINTAIN_GROWTH
        ):
            self._trim(now)

    def _evaluate(self, rule: Rule, st: RuleState, now: float, changed: bool) -> None:
        """`changed`: one of the rule's inputs is in the step's dirty set."""
        self.stats.evaluations += 1
        self.life.evaluate(rule, st, now, changed, self.stats)

    def _update_derived(self, now: float, before: float, dirty: dict[str, float]) -> None:
        """Recompute the derived series from the earliest input time changed."""
        t0 = math.inf
        if not dirty.keys().isdisjoint(USDX_LEGS):
            t0 = min([t for leg, t in dirty.items() if leg in USDX_LEGS])
        if t0 < math.inf:
            n, partial, missing = rebuild_usdx(self.series, t0, self._usdx_legs)
            if n:
                usd = self.series["USDX"]
                if t0 <= before:
                    usd.edits += 1
                if t0 < self._bars_before:
                    self._recompact(usd)
                dirty["USDX"] = min(dirty.get("USDX", math.inf), t0)
                self.stats.usdx_partial += partial
                if missing != self._usdx_missing:
                    self._usdx_missing = missing
                    if missing:
                        log.info(
                            "dollar index USDX from %d of 6 legs (missing %s), "
                            "weights renormalised, at %s",
                            6 - len(missing),
                            ", ".join(sorted(missing)),
                            iso_utc(now),
                        )
                    else:
                        log.info("dollar index USDX has all 6 legs again at %s", iso_utc(now))
        if "SOFR" not in dirty and "IORB" not in dirty:
            return
        t0 = min(dirty.get("SOFR", math.inf), dirty.get("IORB", math.inf) + SOFR_IORB_LAG)
        if t0 < math.inf:
            spread = self.series["SOFR-IORB"]
            had = len(spread.ts)
            if rebuild_spread(self.series, t0) or len(spread.ts) != had:
                if t0 <= before:
                    spread.edits += 1
                self._recompact(spread)
                dirty["SOFR-IORB"] = min(dirty.get("SOFR-IORB", math.inf), t0)

    def _ticks_taken(self) -> int:
        """Ticks that may have changed something: a re-delivery does not move maintenance."""
        st = self.stats
        return self.ticks - st.duplicates - st.unchanged - st.too_old

    def _recompact(self, s: Series) -> None:
        """A derived series recomputed into the compacted past is compacted again."""
        if s.nb < len(s.ts) and s.ts[s.nb] < self._bars_before:
            s.compact(self._bars_before)

    def _trim(self, now: float) -> None:
        self._last_trim = now
        bars_before = (now - COMPACT_AFTER) // COMPACT_RESOLUTION * COMPACT_RESOLUTION
        self._bars_before = max(self._bars_before, bars_before)
        for sym, s in self.series.items():
            if s.ts:
                s.trim(now - self._retention[sym])
                s.compact(self._bars_before)
        self._ticks_at_trim = self._ticks_taken()
        oldest = now - max(self._retention.values()) - 2 * DAY
        if self._gaps and self._gaps[0][1] < oldest:
            self._gaps[:] = [g for g in self._gaps if g[1] >= oldest]
        if now - self._last_forget >= FORGET_EVERY:
            self._last_forget = now
            self.sessions.forget_before(oldest)

    # ---- state for the store ---------------------------------------------------------------

    def chart_retention(self) -> float:
        """How far back the store keeps series for charts and /status (`STORE_KEEP`)."""
        return STORE_KEEP

    def rule_states(self) -> dict[str, dict[str, Any]]:
        by_id = {r.id: r for r in self.rules}
        return {
            rid: {**asdict(st), "pattern": by_id[rid].pattern, "severity": by_id[rid].severity}
            for rid, st in self.states.items()
        }

    def latest(self) -> dict[str, tuple[float, float]]:
        return {sym: (s.ts[-1], s.values[-1]) for sym, s in self.series.items() if s.ts}

    def points_since(
        self,
        since: dict[str, float],
        not_before: float = -math.inf,
        every: float = STORE_RESOLUTION,
    ) -> dict[str, list[tuple[float, float]]]:
        """Points for the store, per symbol: newer than `since[symbol]` (the last point sent)
        and not before `not_before`, at most one in each `every` seconds of event time (the
        first of them; none in the bucket of the last point sent)."""
        out = {}
        for sym, s in self.series.items():
            sent = since.get(sym, -math.inf)
            tss = s.ts
            if not tss or tss[-1] <= sent or tss[-1] < not_before:
                continue
            i = bisect_left(tss, not_before) if not_before > sent else bisect_right(tss, sent)
            vals = s.values
            bucket = sent // every if sent > -math.inf else -math.inf
            pts = []
            for k in range(i, len(tss)):
                b = tss[k] // every
                if b != bucket:
                    bucket = b
                    pts.append((tss[k], vals[k]))
            if pts:
                out[sym] = pts
        return out

    def snapshot(self, extra: dict[str, Any] | None = None) -> bytes:
        """Everything that decides future output, as JSON (with the runner's `extra`)."""
        series = {k: s.snapshot() for k, s in self.series.items() if s.ts}
        return orjson.dumps({"series": series, **self._state(extra)})

    def checkpoint(self, extra: dict[str, Any] | None = None) -> tuple[bytes, PageWrite]:
        """`snapshot` for the store: the state without the series, which go as pages, only
        those changed since the last committed checkpoint (`bot.engine.pages`). Call
        `checkpointed` once it is committed."""
        layout = {k: [len(s.ts), s.nb] for k, s in self.series.items() if s.ts}
        state = orjson.dumps({"paged": layout, **self._state(extra)})
        return state, self.pages.write(self.series)

    def checkpointed(self, pages: PageWrite) -> None:
        """The checkpoint with these pages was committed."""
        self.pages.written(pages)

    def adopt_pages(self, old: Engine) -> None:
        """Take over what `old` committed of the pages (this engine was restored from its
        `snapshot`, with other rules): the next checkpoint writes only what changed."""
        self.pages = old.pages
        for k, s in self.series.items():
            s.dirty_from, s.head_cut = old.series[k].dirty_from, old.series[k].head_cut

    def _state(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "clock": num(self.clock),
            "first_clock": num(self.first_clock),
            "evaluate_from": num(self.evaluate_from),
            "states": {k: asdict(v) for k, v in self.states.items()},
            "held": self._held,
            "dirty": {k: num(v) for k, v in self._dirty.items()},
            "stats": {**stats_json(self.stats), "ticks": self.ticks},
            "usdx_missing": None if self._usdx_missing is None else sorted(self._usdx_missing),
            "bookkeeping": {
                "last_eval": num(self._last_eval),
                "last_input": num(self._last_input),
                "last_trim": num(self._last_trim),
                "last_forget": num(self._last_forget),
                "ticks_at_trim": self._ticks_at_trim,
                "bars_before": num(self._bars_before),
            },
            "gaps": self._gaps,
            "policy": self.life.snapshot(),
            "extra": extra or {},
        }

    def restore(
        self, raw: bytes, pages: PageWrite | None = None, *, without_series: bool = False
    ) -> dict[str, Any]:
        """Restore a `snapshot`, or a `checkpoint` state with the `pages` the store holds
        (raises `PagesError`, changing nothing, when they do not make up its series; with
        `without_series` the state is restored with empty series instead); returns the
        `extra` the runner stored with it."""
        d = orjson.loads(raw)
        layout = d.get("paged")
        series: dict[str, Any] = d.get("series", {})
        if layout is not None and without_series:
            pages = None
        elif layout is not None:
            if pages is None:
                raise PagesError("the checkpoint's series are in pages, and none were read")
            series = read_pages(pages, layout)
        self.clock = inf_or(d["clock"])
        self.first_clock = inf_or(d.get("first_clock"))
        self.evaluate_from = inf_or(d.get("evaluate_from"))
        for k, data in series.items():
            if k in self.series:
                self.series[k].restore(data)
        if layout is not None and pages is not None:
            self.pages.restored(pages, self.series)
        for k, v in d["states"].items():
            if k in self.states:  # a rule removed since the snapshot is forgotten
                self.states[k] = RuleState(**v)
        self._held = {k: (v[0], v[1], v[2]) for k, v in d["held"].items()}
        dirty = d["dirty"]
        if isinstance(dirty, list):  # a checkpoint from before dirty times were kept
            self._dirty = dict.fromkeys(dirty, self.clock)
        else:
            self._dirty = {k: math.inf if v is None else v for k, v in dirty.items()}
        self.stats = stats_from_json(d["stats"])
        self.ticks = self.stats.ticks
        um = d.get("usdx_missing")
        self._usdx_missing = None if um is None else frozenset(um)
        b = d.get("bookkeeping", {})
        self._last_eval = inf_or(b.get("last_eval"))
        self._last_input = inf_or(b.get("last_input", d["clock"]))
        self._last_trim = inf_or(b.get("last_trim"))
        self._last_forget = inf_or(b.get("last_forget"))
        self._ticks_at_trim = int(b.get("ticks_at_trim", 0))
        self._bars_before = inf_or(b.get("bars_before"))
        self._gaps[:] = [(g[0], g[1]) for g in d.get("gaps", [])]
        self.life.restore(d.get("policy", {}))
        extra: dict[str, Any] = d.get("extra", {})
        return extra
