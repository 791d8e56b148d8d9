"""The stress gauge over history files: its series (for reports and docs), its reading at any
instant of a replay (`stressbot like`), and the episode library's vectors
(`stressbot episodes build`).

Each runs the rules on the engine live and replay use (`Engine.from_config`), in memory, and
reads the gauge (`bot.engine.stress`) at whole multiples of `every` seconds of event time,
once the clock has passed them (`StressSampler`), so the figures are those a live engine fed
the same ticks would show.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bot.core.errors import StressbotError
from bot.core.models import Alert, iso_utc
from bot.engine.engine import Engine
from bot.engine.episodes import Episode, Likeness, compare, library_for, raw_moves, vector
from bot.engine.rulefile import RuleSet
from bot.engine.stress import StressReading, StressSampler, _Ctx, read_engine
from bot.runtime.config import Config
from connectors.history.file import Rejects, read_history


@dataclass
class StressHistory:
    points: list[StressReading]  # one every `every` seconds of event time
    alerts: list[Alert] = field(default_factory=list)  # firing and resolved, in order


def run_gauge(
    files: Sequence[Path],
    rules: RuleSet,
    config: Config,
    every: float,
    on_sample: Callable[[Engine, float], None] | None = None,
    until: float = math.inf,
    *,
    rejects: Rejects | None = None,
    seen: Callable[[float, str, float], None] | None = None,
) -> tuple[Engine, StressHistory]:
    """The engine fed `files` (up to `until`), the gauge sampled every `every` seconds and the
    alerts raised; `seen(ts, symbol, value)` is called for every tick fed, `on_sample(engine,
    ts)` for every sample taken, and the files' bad rows are counted into `rejects`."""
    for f in files:
        if not Path(f).is_file():
            raise StressbotError(f"{f}: no such history file")
    engine = Engine.from_config(rules, config.engine, config.sessions)
    sampler = StressSampler(every)
    alerts: list[Alert] = []
    taken = 0
    for _, _, ts, sym, value in read_history(list(files), rejects or Rejects()):
        if ts > until:
            break
        if seen is not None:
            seen(ts, sym, value)
        engine.add(ts, sym, value)
        if engine.pending:
            alerts += engine.take_alerts()
        sampler(engine)
        if on_sample is not None:
            for p in sampler.points[taken:]:
                on_sample(engine, p.ts)
        taken = len(sampler.points)
    if until == math.inf:
        alerts += engine.finish()
        sampler(engine, final=True)
    return engine, StressHistory(sampler.points, alerts)


def stress_series(
    files: Sequence[Path], rules: RuleSet, config: Config | None = None, every: float = 3600.0
) -> StressHistory:
    """The gauge every `every` seconds over `files` (merged by time) and the alerts raised."""
    return run_gauge(files, rules, config or Config(), every)[1]


@dataclass
class LikeReport:
    at: float
    reading: StressReading
    likes: list[Likeness]
    moves: dict[str, float | None]  # sigmas
    raw: dict[str, float | None]  # percent / bp


def engine_at(files: Sequence[Path], rules: RuleSet, config: Config, at: float) -> Engine:
    """The engine fed every tick of `files` up to `at`, its clock moved on to `at`."""
    engine, _ = run_gauge(files, rules, config, 3600.0, until=at)
    if engine.clock == -math.inf:
        raise StressbotError(f"no tick at or before {iso_utc(at)} in the files")
    engine.advance_to(at)
    return engine


def like_at(files: Sequence[Path], rules: RuleSet, config: Config, at: float) -> LikeReport:
    """Score, components and similarity at `at`, from the ticks known then."""
    engine = engine_at(files, rules, config, at)
    c = _Ctx(engine.series, engine.sessions, at)
    return LikeReport(
        at, read_engine(engine, at), compare(c, library_for(rules.files)), vector(c), raw_moves(c)
    )


def _day(text: str, end: bool) -> float:
    d = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    return d + 86400.0 if end else d


def build_episodes(
    files: Sequence[Path], rules: RuleSet, config: Config, episodes: list[Episode]
) -> tuple[list[Episode], list[str]]:
    """The episodes whose window the files cover, with their vectors recomputed at their
    worst point (highest score, hourly), and the ids left as they were (not covered)."""
    windows = {ep.id: (_day(ep.start, False), _day(ep.end, True)) for ep in episodes}
    best: dict[str, tuple[float, float, dict[str, float | None], dict[str, float | None]]] = {}

    def on_sample(engine: Engine, t: float) -> None:
        inside = [i for i, (a, b) in windows.items() if a <= t <= b]
        if not inside:
            return
        r = read_engine(engine, t)
        if r.score is None:
            return
        c = _Ctx(engine.series, engine.sessions, t)
        for i in inside:
            if i not in best or r.score > best[i][1]:
                best[i] = (t, r.score, vector(c), raw_moves(c))

    run_gauge(files, rules, config, 3600.0, on_sample)
    names = ", ".join(sorted({Path(f).name for f in files}))
    out: list[Episode] = []
    for ep in episodes:
        if ep.id not in best:
            out.append(ep)
            continue
        t, score, moves, raw = best[ep.id]
        out.append(
            replace(
                ep,
                at=iso_utc(t),
                score=round(score, 1),
                source=names,
                moves={k: round(v, 2) for k, v in moves.items() if v is not None},
                raw={k: round(v, 2) for k, v in raw.items() if v is not None},
            )
        )
    return out, [ep.id for ep in episodes if ep.id not in best]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_library(episodes: list[Episode]) -> str:
    """The library as TOML (what `stressbot episodes build --write` saves)."""
    lines = [
        "# The episode library of 'how much like 312' (bot/engine/episodes.py, docs/stress.md).",
        "# moves: 5-day moves in sigmas of each market's own regime at the episode's worst",
        "# point (the hour of the highest stress score in [from, to]); raw: the same moves in",
        "# percent (prices) or bp (US10Y, SOFR-IORB). at, score, source, moves and raw are",
        "# derived from the history files by `stressbot episodes build FILE... --write`;",
        "# add an episode by adding a table (moves may be written by hand).",
    ]
    for ep in episodes:
        lines += ["", "[[episode]]", f"id = {_q(ep.id)}", f"name = {_q(ep.name)}"]
        if ep.description:
            lines.append(f"description = {_q(ep.description)}")
        lines += [f"from = {_q(ep.start)}", f"to = {_q(ep.end)}"]
        if ep.source:
            lines.append(f"source = {_q(ep.source)}")
        if ep.at:
            lines.append(f"at = {_q(ep.at)}")
        if ep.score is not None:
            lines.append(f"score = {ep.score}")
        for table, vals in (("moves", ep.moves), ("raw", ep.raw)):
            if vals:
                lines.append(f"[episode.{table}]")
                lines += [f"{_q(k)} = {v}" for k, v in vals.items()]
    return "\n".join(lines) + "\n"
