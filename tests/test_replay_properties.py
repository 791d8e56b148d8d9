"""Property (issue 8, must show (c)): splitting a replay input into several files in any way
(by symbol, by row ranges, interleaved; files in any order) gives the same alerts, byte for
byte, and the same engine counts as the one file.

Inputs are generated: hours to days of ticks for several symbols (second-level BTC, minute
gold and FX, hourly yields, daily SOFR and IORB), with crashes so that rules fire, exact
duplicates, rows out of order and gaps. Hypothesis draws the shape and a seed; the replays
run on a real Redis through `run_replay`, as `stressbot replay` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from bot.engine.rulefile import RuleSet, load_rules
from bot.runtime.config import Config
from bot.runtime.replay import ReplayOptions, ReplayResult, run_replay, write_jsonl
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL

RULES = """
[[rule]]
id = "btc_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "30m") < -2 and drawdown("BTC/USD", "2h") > 2.5'
for = "2m"
cooldown = "1h"
summary = "BTC {r:+.2f}% in 30m, {dd:.2f}% under its 2h high"
symbols = ["BTC/USD", "XAU/USD"]
[rule.values]
r = 'ret("BTC/USD", "30m")'
dd = 'drawdown("BTC/USD", "2h")'

[[rule]]
id = "dollar_bid_gold_sold"
pattern = "custom"
severity = "info"
when = 'ret("USDX", "1h") > 0.15 and ret("XAU/USD", "1h") < -0.3'
for = "0s"
cooldown = "30m"
summary = "USDX {usd:+.2f}%, gold {gold:+.2f}% in 1h (mean gold {mg:.1f})"
[rule.values]
usd = 'ret("USDX", "1h")'
gold = 'ret("XAU/USD", "1h")'
mg = 'mean("XAU/USD", "3h")'

[[rule]]
id = "rates_and_funding"
pattern = "custom"
severity = "critical"
when = '''
bp("US10Y", "3h") > 4
or low_last("SOFR-IORB", 2) >= 5
'''
for = "0s"
cooldown = "2h"
resolve = true
summary = "US10Y {b:+.1f} bp in 3h; SOFR-IORB {s:+.1f} bp"
symbols = ["US10Y", "SOFR-IORB"]
[rule.values]
b = 'bp("US10Y", "3h")'
s = 'last("SOFR-IORB")'
"""

START = datetime(2020, 3, 9, tzinfo=UTC).timestamp()
#: symbol -> (mean seconds between ticks, volatility per tick, start value)
SHAPE = {
    "BTC/USD": (20.0, 0.002, 7900.0),
    "XAU/USD": (60.0, 0.0008, 1650.0),
    "EUR/USD": (120.0, 0.0004, 1.13),
    "USD/JPY": (120.0, 0.0004, 104.0),
    "GBP/USD": (180.0, 0.0004, 1.30),
    "US10Y": (3600.0, 0.02, 0.7),
}


@dataclasses.dataclass(frozen=True)
class Shape:
    seed: int
    hours: int
    crashes: int
    duplicates: float
    disorder: float
    gap_hours: int


def generate(shape: Shape) -> list[str]:
    """CSV rows (without header) in a file order that is mostly, not quite, by time."""
    rng = random.Random(shape.seed)
    end = START + shape.hours * 3600.0
    gap_from = START + rng.uniform(0.2, 0.6) * shape.hours * 3600.0
    gap_to = gap_from + shape.gap_hours * 3600.0
    crash_at = [START + rng.uniform(0, shape.hours * 3600.0) for _ in range(shape.crashes)]
    rows: list[tuple[float, str, str]] = []
    for sym, (every, vol, v) in SHAPE.items():
        t = START + rng.uniform(0, every)
        while t < end:
            crash = any(c <= t < c + 2400 for c in crash_at)
            drift = -0.0012 if crash and sym == "BTC/USD" else 0.0
            drift += -0.0004 if crash and sym == "XAU/USD" else 0.0
            drift += 0.0002 if crash and sym in ("USD/JPY",) else 0.0
            drift += 0.01 if crash and sym == "US10Y" else 0.0
            v *= math.exp(drift * every / 20 + rng.gauss(0, vol))
            if not gap_from <= t < gap_to or sym == "US10Y":
                rows.append((t, sym, f"{v:.6g}"))
            t += max(1.0, rng.expovariate(1 / every))
    day = START
    while day < end:  # daily prints: IORB at 05:00, SOFR for the day before at 13:00 UTC
        rows.append((day + 5 * 3600, "IORB", "0.10"))
        rows.append((day + 13 * 3600, "SOFR", f"{0.05 + rng.choice([0, 0, 0.01, 0.2]):.2f}"))
        day += 86400.0
    rows = [(math.floor(t), s, v) for t, s, v in rows if t < end]
    rows.sort(key=lambda r: r[0])
    seen: set[tuple[float, str]] = set()
    unique = []
    for r in rows:  # one value per (time, symbol): a repeat is an exact duplicate, below
        if (r[0], r[1]) not in seen:
            seen.add((r[0], r[1]))
            unique.append(r)
    out = [f"{datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%SZ},{s},{v}" for t, s, v in unique]
    for _ in range(int(len(out) * shape.duplicates)):
        i = rng.randrange(len(out))
        out.insert(min(len(out), i + rng.randrange(0, 30)), out[i])
    for _ in range(int(len(out) * shape.disorder)):
        i = rng.randrange(len(out))
        j = min(len(out) - 1, max(0, i + rng.randint(-200, 200)))
        out[i], out[j] = out[j], out[i]
    return out


def split(rows: list[str], how: str, k: int, rng: random.Random) -> list[list[str]]:
    parts: list[list[str]] = [[] for _ in range(k)]
    if how == "symbol":
        symbols = sorted({r.split(",")[1] for r in rows})
        home = {s: rng.randrange(k) for s in symbols}
        for r in rows:
            parts[home[r.split(",")[1]]].append(r)
    elif how == "ranges":
        cuts = sorted(rng.randrange(len(rows) + 1) for _ in range(k - 1))
        for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(rows)], strict=True)):
            parts[i] = rows[a:b]
    else:  # interleaved at random
        for r in rows:
            parts[rng.randrange(k)].append(r)
    rng.shuffle(parts)  # the files in any order
    return parts


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("ts,symbol,value\n" + "".join(r + "\n" for r in rows))
    return path


async def _run(files: list[Path], rules: RuleSet) -> ReplayResult:
    redis = Redis.from_url(REDIS_URL)
    store = Store(redis, prefix=f"test:{uuid.uuid4().hex[:12]}")
    try:
        return await run_replay(ReplayOptions(files=files), Config(), store, rules)
    finally:
        await store.clear()
        await redis.aclose()


def _replay(files: list[Path], rules: RuleSet, out: Path) -> tuple[bytes, ReplayResult]:
    """Replay on the real Redis; the alerts as `--jsonl` writes them, and the result."""
    r = asyncio.run(_run(files, rules))
    write_jsonl(r.alerts, out)
    return out.read_bytes(), r


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    d = tmp_path_factory.mktemp("rules")
    (d / "generated.toml").write_text(RULES)
    return load_rules(d, Config().sessions)


shapes = st.builds(
    Shape,
    seed=st.integers(0, 2**32 - 1),
    hours=st.integers(4, 60),
    crashes=st.integers(0, 4),
    duplicates=st.sampled_from([0.0, 0.002, 0.02]),
    disorder=st.sampled_from([0.0, 0.0, 0.001, 0.01]),
    gap_hours=st.sampled_from([0, 0, 3, 20]),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=shapes,
    how=st.sampled_from(["symbol", "ranges", "interleaved"]),
    k=st.integers(2, 4),
    split_seed=st.integers(0, 2**16),
)
def test_splitting_the_input_into_files_in_any_way_gives_the_same_alerts(
    rules: RuleSet, shape: Shape, how: str, k: int, split_seed: int
) -> None:
    rows = generate(shape)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        one = _write(d / "one.csv", rows)
        parts = [
            _write(d / f"part{i}.csv", p)
            for i, p in enumerate(split(rows, how, k, random.Random(split_seed)))
        ]
        want, r1 = _replay([one], rules, d / "one.jsonl")
        got, r2 = _replay(parts, rules, d / "parts.jsonl")
    assert got == want, f"{how} split into {k} files changed the alerts"
    assert dataclasses.asdict(r2.stats) == dataclasses.asdict(r1.stats)
    assert r2.ticks_read == r1.ticks_read == len(rows)


def test_the_generated_inputs_exercise_the_rules(rules: RuleSet, tmp_path: Path) -> None:
    """The property is only worth something if alerts do fire on such inputs."""
    fired: set[str] = set()
    for seed in range(4):
        rows = generate(Shape(seed, 48, 3, 0.01, 0.01, 3))
        _, r = _replay([_write(tmp_path / "g.csv", rows)], rules, tmp_path / "o")
        fired |= {a.rule for a in r.alerts}
        assert r.stats.duplicates > 0
    assert fired == {"btc_drop", "dollar_bid_gold_sold", "rates_and_funding"}, fired
