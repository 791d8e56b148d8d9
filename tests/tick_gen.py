"""Long generated market input for the engine's property tests.

Hypothesis draws a compact description (a seed, how many days, how dirty the feed is, where
the gaps and the crashes are); `expand` turns it into days of second-level ticks for several
symbols with duplicates, out-of-order ticks, sub-second bursts, gaps in the input and daily
prints (yields, SOFR, IORB, S&P 500), plus the rules that make such input raise alerts often.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import strategies as st

Tick3 = tuple[float, str, float]

START = datetime(2024, 3, 4, tzinfo=UTC).timestamp()  # a Monday
H = 3600.0
D = 86400.0
GAP_AFTER = "6h"  # the property engines treat 6 h without any tick as missing input


@dataclass(frozen=True)
class Market:
    seed: int
    days: float
    duplicates: float  # share of ticks delivered twice (at once or a little later)
    late: float  # share of ticks delivered out of order
    gaps: tuple[tuple[float, float], ...]  # (start as a share of the span, hours of silence)
    crashes: tuple[tuple[float, float, float], ...]  # (start share, depth %, minutes)
    backfill: float = 0.0  # share of the span delivered only after the next 3 hours (late)


@st.composite
def markets(draw: st.DrawFn, max_days: float = 3.0) -> Market:
    return Market(
        seed=draw(st.integers(0, 2**32 - 1)),
        days=draw(st.floats(0.5, max_days)),
        duplicates=draw(st.sampled_from([0.0, 0.01, 0.05])),
        late=draw(st.sampled_from([0.0, 0.005, 0.02])),
        gaps=tuple(
            draw(
                st.lists(
                    st.tuples(st.floats(0.05, 0.95), st.sampled_from([0.5, 3.0, 8.0, 30.0])),
                    max_size=2,
                )
            )
        ),
        crashes=tuple(
            draw(
                st.lists(
                    st.tuples(st.floats(0.0, 1.0), st.floats(4.0, 20.0), st.floats(3.0, 90.0)),
                    max_size=3,
                )
            )
        ),
        backfill=draw(st.sampled_from([0.0, 0.0, 0.3])),
    )


def _walk(
    rng: random.Random, t0: float, t1: float, mean_dt: float, v0: float, vol: float
) -> list[tuple[float, float]]:
    out = []
    t, v = t0, v0
    while t < t1:
        if rng.random() < 0.05:  # a burst: several ticks within a second or two
            for _ in range(rng.randint(2, 6)):
                t += rng.choice([0.05, 0.2, 0.5, 1.0])
                v *= 1 + rng.gauss(0, vol / 4)
                out.append((round(t, 3), round(v, 6)))
        t += rng.expovariate(1 / mean_dt)
        v *= 1 + rng.gauss(0, vol)
        out.append((round(t, 3), round(v, 6)))
    return out


def expand(m: Market) -> list[Tick3]:
    """The ticks of a generated market in delivery order."""
    span = m.days * D
    rng = random.Random(m.seed)
    end = START + m.days * D
    ticks: list[Tick3] = []
    btc = _walk(rng, START, end, 20.0, 60_000.0, 0.0008)
    for start, depth, minutes in m.crashes:
        c0 = START + start * (end - START)
        c1 = c0 + minutes * 60
        for k, (t, v) in enumerate(btc):
            if t >= c0:
                f = min((t - c0) / (c1 - c0), 1.0)
                btc[k] = (t, round(v * (1 - depth / 100 * f), 6))
    ticks += [(t, "BTC/USD", v) for t, v in btc]
    for sym, v0, dt, vol in (
        ("EUR/USD", 1.08, 45.0, 0.0002),
        ("USD/JPY", 150.0, 50.0, 0.0002),
        ("GBP/USD", 1.27, 70.0, 0.0002),
        ("XAU/USD", 2100.0, 60.0, 0.0003),
    ):
        ticks += [(t, sym, v) for t, v in _walk(rng, START, end, dt, v0, vol)]
    day = START
    us10, sofr = 4.20, 5.31
    while day < end:
        if datetime.fromtimestamp(day, UTC).weekday() < 5:
            us10 += rng.gauss(0, 0.06)
            sofr += rng.choice([0.0, 0.0, 0.01, -0.01, 0.08, 0.2, -0.2])
            ticks += [
                (day + 4 * H, "IORB", 5.40),
                (day + 12 * H, "SOFR", round(sofr, 2)),
                (day + 20 * H, "US10Y", round(us10, 2)),
                (day + 20 * H, "US30Y", round(us10 + 0.2, 2)),
                (day + 20 * H, "SPX", round(5000 * (1 + rng.gauss(0, 0.01)), 2)),
            ]
        day += D
    ticks = [x for x in ticks if x[0] < end]
    ticks.sort(key=lambda x: x[0])
    for start, hours in m.gaps:  # nothing at all arrives for a while
        g0 = START + start * span
        g1 = g0 + hours * H
        ticks = [x for x in ticks if not g0 <= x[0] < g1]
    out: list[Tick3] = []
    held: list[tuple[int, Tick3]] = []
    for k, x in enumerate(ticks):
        while held and held[0][0] <= k:
            out.append(held.pop(0)[1])
        r = rng.random()
        if r < m.late:
            held.append((k + rng.randint(1, 40), x))  # delivered after some later ticks
            held.sort(key=lambda h: h[0])
            continue
        out.append(x)
        if r < m.late + m.duplicates:
            if rng.random() < 0.5:
                out.append(x)  # sent twice at once
            else:
                held.append((k + rng.randint(1, 200), x))  # re-sent after a reconnect
                held.sort(key=lambda h: h[0])
    out += [h[1] for h in held]
    if m.backfill:  # like a first-start backfill: the oldest history arrives hours late
        cut = START + m.backfill * span
        old = [x for x in out if x[0] < cut]
        new = [x for x in out if x[0] >= cut]
        k = next((i for i, x in enumerate(new) if x[0] >= cut + 3 * H), len(new))
        out = new[:k] + old + new[k:]
    assert all(math.isfinite(v) and v > 0 for _, _, v in out)
    return out


PROPERTY_RULES = """
[[rule]]
id = "btc_fast_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "15m") < -3'
for = "0s"
cooldown = "30m"
summary = "BTC {r:+.2f}% in 15m, {c:,.0f}"
symbols = ["BTC/USD"]
[rule.values]
r = 'ret("BTC/USD", "15m")'
c = 'last("BTC/USD")'

[[rule]]
id = "btc_drawdown"
pattern = "custom"
severity = "info"
when = 'drawdown("BTC/USD", "2h30m") > 4 and mean("BTC/USD", "1h") > 0'
for = "5m"
cooldown = "1h"
summary = "BTC {dd:.2f}% below its 2h30m high {hi:,.1f}, mean {m:,.2f}"
symbols = ["BTC/USD", "XAU/USD"]
[rule.values]
dd = 'drawdown("BTC/USD", "2h30m")'
hi = 'high("BTC/USD", "2h30m")'
m = 'mean("BTC/USD", "3h")'

[[rule]]
id = "btc_range"
pattern = "custom"
severity = "info"
when = 'high("BTC/USD", "3h") > 1.06 * low("BTC/USD", "3h") or rally("BTC/USD", "1h") > 3'
for = "0s"
cooldown = "2h"
summary = "BTC range {hi:,.1f} to {lo:,.1f}"
[rule.values]
hi = 'high("BTC/USD", "3h")'
lo = 'low("BTC/USD", "3h")'

[[rule]]
id = "dollar_sessions"
pattern = "session_dollar"
severity = "info"
when = '''
abs(session_ret("USDX", "europe", "2d")) > 0.1
or abs(session_ret("USDX", "asia", "1d")) > 0.1
'''
for = "10m"
cooldown = "6h"
summary = "USDX europe {e:+.3f}%, asia {a:+.3f}%, now {u:.3f}"
symbols = ["USDX", "EUR/USD"]
[rule.values]
e = 'session_ret("USDX", "europe", "2d")'
a = 'session_ret("USDX", "asia", "1d")'
u = 'last("USDX")'

[[rule]]
id = "funding"
pattern = "funding_stress"
severity = "warning"
when = 'low_last("SOFR-IORB", 2) >= -9 and not stale("SOFR", "4d")'
for = "0s"
cooldown = "1d"
summary = "spread {s:+.0f} bp (previous fixing {p:+.0f} bp, max of 3 {h:+.0f})"
symbols = ["SOFR", "IORB", "SOFR-IORB"]
[rule.values]
s = 'last("SOFR-IORB")'
p = 'prev("SOFR-IORB")'
h = 'high_last("SOFR-IORB", 3)'

[[rule]]
id = "rates"
pattern = "rates_shock"
severity = "warning"
when = 'abs(bp("US10Y", "1d")) >= 6 and abs(coalesce(zscore("US10Y", "1d", "12d"), 3)) >= 1'
for = "0s"
cooldown = "1d"
summary = "10y {d:+.0f} bp, z {z:+.1f}"
[rule.values]
d = 'bp("US10Y", "1d")'
z = 'zscore("US10Y", "1d", "12d")'

[[rule]]
id = "gold_quiet"
pattern = "custom"
severity = "info"
when = 'stale("XAU/USD", "20m") or count_falling(["BTC/USD", "XAU/USD"], "1h", 1) >= 2'
for = "0s"
cooldown = "3h"
summary = "gold quiet or both falling"
"""


def property_rules_dir(tmp: Path, with_shipped: bool = True) -> Path:
    """The property rules, plus the shipped ones (they read the same symbols)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "property.toml").write_text(PROPERTY_RULES)
    if with_shipped:
        shipped = Path(__file__).resolve().parent.parent / "rules"
        for f in shipped.glob("*.toml"):
            (tmp / f.name).write_text(f.read_text())
    return tmp
