"""'How much like 312': the cross-asset move now, compared with a library of past episodes.

An episode is the vector of 5-day moves of ten markets at its worst point (the hour of the
highest stress score inside its window), each in sigmas of that market's own regime, as the
gauge measures them (`bot.engine.stress.sigma`): BTC, gold, silver, S&P 500, Nasdaq-100,
Nikkei, the 10-year yield, the dollar (USDX, else DXY), VIX and SOFR-IORB. Sigmas make 2008
and 2020 comparable although their price levels and volatilities differ. The library is a
TOML file of `[[episode]]` tables (`rules/episodes/library.toml`, its numbers derived from
the history files by `stressbot episodes build`); a user adds an episode by adding a table,
or a file in the same folder, and `stressbot episodes check` validates them as rule files
are validated.

Similarity of the vector now (x) with an episode (e), over the markets known in both (at
least `MIN_COMMON`):

    direction = cos(x, e)                  1: the same markets moved the same way, relative
                                           to each other; 0 or less: unrelated or opposite
    size      = min(|x|, |e|) / max(|x|, |e|)   1: a move as large as the episode's
    similarity = max(direction, 0) * sqrt(size)

so a calm day whose small moves happen to point the 312 way is not "like 312", and neither
is a crypto-only crash of 312's size. The markets whose sigmas are within `MATCH_SIGMAS` of
the episode's are listed as matching, the others as differing (largest gap first).
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.errors import StressbotError
from bot.core.models import iso_utc
from bot.engine.stress import COMPONENTS, read_stress, sigma

log = logging.getLogger(__name__)

WINDOW = 5 * 86400.0
#: market -> the series read for it (the first one known)
ASSETS: dict[str, tuple[str, ...]] = {
    "BTC/USD": ("BTC/USD",),
    "XAU/USD": ("XAU/USD",),
    "XAG/USD": ("XAG/USD",),
    "SPX": ("SPX",),
    "NDX": ("NDX",),
    "N225": ("N225",),
    "US10Y": ("US10Y",),
    "USD": ("USDX", "DXY"),
    "VIX": ("VIX",),
    "SOFR-IORB": ("SOFR-IORB",),
}
LIMIT = 8.0  # sigmas: a vector element is clipped to +-LIMIT
MIN_COMMON = 4
MATCH_SIGMAS = 1.5
MAX_LIBRARY_BYTES = 256 * 1024


class EpisodeError(StressbotError):
    """An episode file is invalid. Carries every problem, each naming file and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class EpisodeSpec(BaseModel):
    """One `[[episode]]` table as written in the file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    name: str = Field(min_length=1)
    description: str = ""
    from_: date = Field(alias="from")
    to: date
    source: str = ""  # the history file the numbers were derived from
    at: str = ""  # the worst point, ISO UTC
    score: float | None = Field(default=None, ge=0, le=100)
    moves: dict[str, float]  # market -> sigmas of its regime over 5 days
    raw: dict[str, float] = Field(default_factory=dict)  # the same in percent / bp

    @field_validator("moves", "raw")
    @classmethod
    def _markets(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if k not in ASSETS:
                raise ValueError(f"unknown market {k!r} (known: {', '.join(ASSETS)})")
            if not math.isfinite(x):
                raise ValueError(f"{k}: must be a finite number, got {x}")
        return v

    @field_validator("moves")
    @classmethod
    def _enough(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) < MIN_COMMON:
            raise ValueError(f"needs at least {MIN_COMMON} markets, has {len(v)}")
        for k, x in v.items():
            if abs(x) > LIMIT:
                raise ValueError(f"{k}: {x} sigmas is beyond +-{LIMIT:g}")
        return v


@dataclass(frozen=True)
class Episode:
    id: str
    name: str
    moves: dict[str, float]
    description: str = ""
    start: str = ""
    end: str = ""
    source: str = ""
    at: str = ""
    score: float | None = None
    raw: dict[str, float] = field(default_factory=dict)


@dataclass
class Likeness:
    episode: str  # id
    name: str
    similarity: float
    direction: float
    size: float
    matches: list[str]
    differs: list[str]  # "MARKET now X vs Y", largest gap first
    missing: list[str]  # markets of the episode not known now

    def to_json(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "name": self.name,
            "similarity": round(self.similarity, 3),
            "direction": round(self.direction, 3),
            "size": round(self.size, 3),
            "matches": self.matches,
            "differs": self.differs,
            "missing": self.missing,
        }


def _episode(spec: EpisodeSpec) -> Episode:
    return Episode(
        spec.id,
        spec.name,
        dict(spec.moves),
        spec.description,
        spec.from_.isoformat(),
        spec.to.isoformat(),
        spec.source,
        spec.at,
        spec.score,
        dict(spec.raw),
    )


def parse_library(text: str, where: str) -> list[Episode]:
    """The episodes of one file's text; raises EpisodeError naming `where` and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EpisodeError([f"{where}: not valid TOML: {e}"]) from None
    extra = sorted(set(data) - {"episode"})
    problems = [f"{where}: unknown top-level key '{k}' (only [[episode]] tables)" for k in extra]
    tables = data.get("episode", [])
    if not isinstance(tables, list):
        raise EpisodeError([*problems, f"{where}: 'episode' must be [[episode]] tables"])
    out: list[Episode] = []
    seen: set[str] = set()
    for n, t in enumerate(tables, 1):
        label = f"episode #{n}" + (f" '{t['id']}'" if isinstance(t, dict) and "id" in t else "")
        try:
            spec = EpisodeSpec.model_validate(t)
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "(table)"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                problems.append(f"{where}: {label}: {loc}: {msg}")
            continue
        if spec.to < spec.from_:
            problems.append(f"{where}: {label}: to: {spec.to} is before from ({spec.from_})")
        if spec.id in seen:
            problems.append(f"{where}: {label}: id: '{spec.id}' is already used")
        seen.add(spec.id)
        out.append(_episode(spec))
    if problems:
        raise EpisodeError(problems)
    return out


def load_library(path: Path | str) -> list[Episode]:
    """Every episode of a file, or of every `*.toml` in a folder (ids unique across them)."""
    p = Path(path)
    files = sorted(p.glob("*.toml")) if p.is_dir() else [p]
    if not files:
        raise EpisodeError([f"{p}: no episode files (*.toml) in this folder"])
    problems: list[str] = []
    out: list[Episode] = []
    where: dict[str, str] = {}
    for f in files:
        try:
            with f.open("rb") as fh:
                data = fh.read(MAX_LIBRARY_BYTES + 1)
            if len(data) > MAX_LIBRARY_BYTES:
                raise EpisodeError([f"{f}: larger than {MAX_LIBRARY_BYTES // 1024} KiB"])
            episodes = parse_library(data.decode("utf-8"), str(f))
        except OSError as e:
            problems.append(f"{f}: cannot be read: {e.strerror or e}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{f}: not UTF-8 text")
            continue
        except EpisodeError as e:
            problems += e.problems
            continue
        for ep in episodes:
            if ep.id in where:
                problems.append(f"{f}: episode '{ep.id}': id already used in {where[ep.id]}")
                continue
            where[ep.id] = str(f)
            out.append(ep)
    if problems:
        raise EpisodeError(problems)
    return out


def shipped_library_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "rules" / "episodes"


_CACHE: dict[tuple[str, float], list[Episode]] = {}


def library_for(rule_files: list[Path]) -> list[Episode]:
    """The library beside the rules (`RULES/episodes/`), else the shipped one. A broken
    library is logged and the shipped one used, so alerts keep their similarity."""
    d = rule_files[0].parent / "episodes" if rule_files else shipped_library_dir()
    if not d.is_dir():
        d = shipped_library_dir()
    try:
        key = (str(d.resolve()), max((f.stat().st_mtime for f in d.glob("*.toml")), default=0))
        if key not in _CACHE:
            _CACHE[key] = load_library(d)
        return _CACHE[key]
    except (EpisodeError, OSError) as e:
        log.error("episode library %s not loaded (%s); using the shipped one", d, e)
        if d != shipped_library_dir():
            return library_for([])
        return []


def vector(c: Any) -> dict[str, float | None]:
    """The 5-day moves now, in sigmas (clipped to +-LIMIT), None where unknown."""
    out: dict[str, float | None] = {}
    for name, syms in ASSETS.items():
        v = None
        for s in syms:
            v = sigma(c, s, WINDOW)
            if v is not None:
                break
        out[name] = None if v is None else max(-LIMIT, min(LIMIT, v))
    return out


def raw_moves(c: Any) -> dict[str, float | None]:
    """The same 5-day moves in percent (prices) or bp (yields, SOFR-IORB)."""
    out: dict[str, float | None] = {}
    for name, syms in ASSETS.items():
        v = None
        for s in syms:
            ser = c.series[s]
            if s in ("US10Y",):
                ch = ser.change(c.now, WINDOW)
                v = None if ch is None else ch * 100.0
            elif s == "SOFR-IORB":
                v = ser.change(c.now, WINDOW)
            else:
                v = ser.ret(c.now, WINDOW)
            if v is not None:
                break
        out[name] = v
    return out


def likeness(x: dict[str, float | None], ep: Episode) -> Likeness | None:
    common = [k for k in ASSETS if k in ep.moves and x.get(k) is not None]
    missing = [k for k in ASSETS if k in ep.moves and x.get(k) is None]
    if len(common) < MIN_COMMON:
        return None
    xs = [float(x[k] or 0.0) for k in common]
    es = [ep.moves[k] for k in common]
    nx = math.sqrt(sum(v * v for v in xs))
    ne = math.sqrt(sum(v * v for v in es))
    if nx <= 1e-9 or ne <= 1e-9:
        direction, size = 0.0, 0.0
    else:
        direction = sum(a * b for a, b in zip(xs, es, strict=True)) / (nx * ne)
        size = min(nx, ne) / max(nx, ne)
    sim = max(direction, 0.0) * math.sqrt(size)
    gaps = sorted(
        ((abs(a - b), k, a, b) for k, a, b in zip(common, xs, es, strict=True)), reverse=True
    )
    by_size = sorted(gaps, key=lambda g: -abs(g[3]))
    matches = [k for d, k, _, _ in by_size if d <= MATCH_SIGMAS]
    differs = [f"{k} {a:+.1f} vs {b:+.1f}" for d, k, a, b in gaps if d > MATCH_SIGMAS]
    return Likeness(ep.id, ep.name, sim, direction, size, matches, differs, missing)


def compare(c: Any, library: list[Episode]) -> list[Likeness]:
    """Every episode's likeness to the moves at `c.now`, most alike first."""
    x = vector(c)
    out = [lk for ep in library if (lk := likeness(x, ep)) is not None]
    out.sort(key=lambda lk: (-lk.similarity, lk.episode))
    return out


def stress_values(c: Any, library: list[Episode]) -> dict[str, float | None]:
    """What every alert carries: `stress` (the score, 0..100) and `like_<ID>`, the
    similarity (0..1) to the closest episode of the library; each left out when unknown."""
    score = read_stress(c).score
    out: dict[str, float | None] = {}
    if score is not None:  # nothing when too little is known (as in a one-symbol test)
        out["stress"] = round(score, 1)
    best = compare(c, library)
    if best:
        out[f"like_{best[0].episode}"] = round(best[0].similarity, 2)
    return out


def describe(likes: list[Likeness], n: int = 3) -> str:
    """'looks 0.81 like 312, 0.22 like 519, 0.10 like gfc_2008'"""
    if not likes:
        return "no episode comparable (too few markets known)"
    return "looks " + ", ".join(f"{lk.similarity:.2f} like {lk.episode}" for lk in likes[:n])


def stress_report(engine: Any, library: list[Episode] | None = None, n: int = 3) -> dict[str, Any]:
    """The gauge and the closest episodes at an engine's clock, as JSON (the live engine
    publishes it in its status for `/like` and `/status`; `stressbot like` prints it)."""
    c = _At(engine.series, engine.sessions, engine.clock)
    likes = compare(c, engine.episodes if library is None else library)
    return {
        "ts": engine.clock,
        **read_stress(c).to_json(),
        "like": [lk.to_json() for lk in likes[:n]],
        "moves": {k: None if v is None else round(v, 2) for k, v in vector(c).items()},
    }


class _At:
    __slots__ = ("now", "series", "sessions")  # sessions: the gauge's `dollar_sessions`

    def __init__(self, series: Any, sessions: Any, now: float) -> None:
        self.series, self.sessions, self.now = series, sessions, now


def format_like(r: dict[str, Any]) -> str:
    """The text `stressbot like` prints and `/like` sends, of a `stress_report`."""
    labels = {c.name: c.label for c in COMPONENTS}
    score = r.get("score")
    head = "n/a (too few markets known)" if score is None else f"{score:.0f}/100"
    lines = [f"Stress {head} at {iso_utc(r['ts'])}"]
    comps = r.get("components", {})
    for name, c in sorted(comps.items(), key=lambda kv: -kv[1]["contribution"]):
        if c["z"] is None:
            continue
        lines.append(
            f"  {name:<15} {c['z']:4.1f} sd  {c['contribution']:5.1f} pts  ({labels.get(name, '')})"
        )
    if r.get("missing"):
        share = r.get("coverage", 0.0) * 100
        lines.append(f"  no data: {', '.join(r['missing'])} (weights reweighted over {share:.0f}%)")
    likes = r.get("like", [])
    if likes:
        alike = ", ".join(f"{lk['similarity']:.2f} like {lk['episode']}" for lk in likes)
        lines.append(f"Looks {alike}")
        best = likes[0]
        lines.append(f"  {best['episode']} = {best['name']}")
        if best["matches"]:
            lines.append(f"  matching: {', '.join(best['matches'])}")
        if best["differs"]:
            lines.append(f"  differing (now vs then, sd): {'; '.join(best['differs'])}")
        if best["missing"]:
            lines.append(f"  not known now: {', '.join(best['missing'])}")
    else:
        lines.append("No episode comparable (fewer than 4 markets known)")
    return "\n".join(lines)


def stress_line(r: dict[str, Any]) -> str:
    """One line for /status: 'Stress 93/100 (equities, vix) · looks 0.89 like 312'."""
    score = r.get("score")
    if score is None:
        return "Stress n/a (too few markets known)"
    comps = sorted(r.get("components", {}).items(), key=lambda kv: -kv[1]["contribution"])
    top = ", ".join(n for n, c in comps[:2] if c["contribution"] >= 1.0)
    out = f"Stress {score:.0f}/100" + (f" ({top})" if top else "")
    likes = r.get("like", [])
    if likes:
        out += f" · looks {likes[0]['similarity']:.2f} like {likes[0]['episode']}"
    return out
