"""The engine's semantics on real-world input (issue 8): duplicates, derived series stamped at
their inputs' times, bars that keep their highs and lows, a time-weighted mean, snapshots that
restore everything that decides future output, session caches that see late ticks, and gaps
in the input that are not read as moves.

Each test named ``test_defectN_...`` reproduces defect N of the issue; it failed before the
fix."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.core.models import Alert, AlertKind
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.runtime.config import Config
from connectors.history.file import read_history
from tests.conftest import shared_path

H = 3600.0
D = 86400.0
SESSIONS = ["asia", "europe", "us"]


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def rules_from(tmp_path: Path, body: str) -> RuleSet:
    (tmp_path / "r.toml").write_text(body)
    return load_rules(tmp_path, SESSIONS)


def shipped_engine(**engine: object) -> Engine:
    config = Config.model_validate({"engine": engine}) if engine else Config()
    return Engine.from_config(
        load_rules(default_rules_dir(), config.sessions), config.engine, config.sessions
    )


def feed(e: Engine, ticks: list[tuple[float, str, float]], finish: bool = True) -> list[Alert]:
    out: list[Alert] = []
    for t, s, v in ticks:
        e.add(t, s, v)
        out += e.take_alerts()
    return out + (e.finish() if finish else [])


def firing(alerts: list[Alert], rule: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.kind is AlertKind.FIRING and rule in (None, a.rule)]


def wire(alerts: list[Alert]) -> list[bytes]:
    """What a destination would receive, plus the exact event time: byte-comparable."""
    return [a.dumps() + repr(a.ts).encode() for a in alerts]


# ---- defect 1: duplicates, derived series, low_last, the previous fixing -------------------


def test_defect1_a_duplicate_sofr_print_does_not_fire_funding_stress() -> None:
    e = shipped_engine()
    day = utc("2024-06-03T12:00:00")
    ticks = [
        (day - D, "IORB", 5.40),
        (day, "SOFR", 5.33),  # -7 bp
        (day + D, "SOFR", 5.60),  # +20 bp, once
    ]
    # a polled feed restarts and sends its last observation again; time goes on meanwhile
    for k in range(1, 6):
        ticks.append((day + D + k * H, "BTC/USD", 60_000.0))
        ticks.append((day + D, "SOFR", 5.60))
    alerts = feed(e, ticks)
    assert firing(alerts, "funding_stress") == []
    s = e.series["SOFR-IORB"]
    assert s.ts == [day, day + D]  # one spread per fixing, at the fixing's own time
    assert s.values == [pytest.approx(-7.0), pytest.approx(20.0)]
    assert e.stats.duplicates == 5


def test_defect1_iorb_is_read_as_of_sofrs_own_time_not_the_clock() -> None:
    e = shipped_engine()
    d1 = utc("2020-03-16T04:00:00")  # IORB 1.10 in force on the 16th ...
    sofr_ts = utc("2020-03-17T12:00:00")  # ... SOFR for the 16th, published on the 17th
    ticks = [
        (d1 - D, "IORB", 1.10),
        (sofr_ts, "SOFR", 1.09),
        (utc("2020-03-18T04:00:00"), "IORB", 0.90),  # IORB cut on the 18th
        (utc("2020-03-18T17:00:00"), "BTC/USD", 5000.0),
        (sofr_ts, "SOFR", 1.09),  # the same fixing delivered again after the cut
        (utc("2020-03-18T18:00:00"), "BTC/USD", 5000.0),
    ]
    feed(e, ticks)
    s = e.series["SOFR-IORB"]
    assert list(zip(s.ts, s.values, strict=True)) == [(sofr_ts, pytest.approx(-1.0))]


def test_defect1_a_late_iorb_restamps_the_spread_of_the_fixings_it_applies_to() -> None:
    e = shipped_engine()
    t = utc("2024-06-04T12:00:00")
    feed(
        e,
        [
            (t - 2 * D, "IORB", 5.40),
            (t, "SOFR", 5.33),
            (t + H, "BTC/USD", 1.0),
            (t - 20 * H, "IORB", 5.30),  # a correction for the day, delivered late
            (t + 2 * H, "BTC/USD", 1.0),
        ],
    )
    s = e.series["SOFR-IORB"]
    assert list(zip(s.ts, s.values, strict=True)) == [(t, pytest.approx(3.0))]


def test_defect1_the_previous_fixing_in_the_summary_is_the_previous_fixing() -> None:
    e = shipped_engine()
    day = utc("2024-06-03T12:00:00")
    alerts = feed(
        e,
        [
            (day - D, "IORB", 5.40),
            (day, "SOFR", 5.70),  # +30 bp
            (day + D, "SOFR", 5.56),  # +16 bp: both >= 15, the rule fires
            (day + D + H, "BTC/USD", 1.0),
        ],
    )
    (a,) = firing(alerts, "funding_stress")
    assert a.values["spread"] == pytest.approx(16.0)
    assert a.values["prev"] == pytest.approx(30.0)
    assert "(previous fixing +30 bp)" in a.summary


def test_defect1_a_repeated_tick_marks_nothing_dirty_and_a_correction_does() -> None:
    e = shipped_engine()
    e.add(100.0, "US10Y", 1.50)
    e.add(200.0, "BTC/USD", 1.0)  # evaluates at 100: nothing dirty any more
    e.add(100.0, "US10Y", 1.50)
    assert "US10Y" not in e.dirty_symbols()
    e.add(100.0, "US10Y", 1.52)  # same time, new value: a correction
    assert "US10Y" in e.dirty_symbols()
    assert e.series["US10Y"].values == [1.52]


def test_defect1_a_duplicate_does_not_confirm_a_held_wild_print(tmp_path: Path) -> None:
    e = Engine(
        rules_from(
            tmp_path,
            """
[[rule]]
id = "r"
pattern = "custom"
severity = "info"
when = 'last("BTC/USD") > 0'
for = "0s"
cooldown = "1d"
summary = "x"
""",
        ),
        {},
        wild_print_pct=15.0,
    )
    for t, v in [(0, 100.0), (10, 100.0), (20, 50.0), (20, 50.0), (30, 100.0)]:
        e.add(float(t), "BTC/USD", v)
    assert 50.0 not in e.series["BTC/USD"].values
    assert e.stats.wild_prints == 1


# ---- defect 2 is a live-loop defect: tests/test_live_catchup.py ------------------------------

# ---- defect 3: bars keep open/high/low/close and a time weight; restore is exact -----------

HIGH_RULE = """
[[rule]]
id = "btc_high"
pattern = "custom"
severity = "info"
when = 'high("BTC/USD", "2h30m") > 105'
for = "0s"
cooldown = "1h"
summary = "BTC high {h:.1f}, mean {m:.2f}"
symbols = ["BTC/USD"]
[rule.values]
h = 'high("BTC/USD", "2h30m")'
m = 'mean("BTC/USD", "2h30m")'
"""


def spike_ticks() -> list[tuple[float, str, float]]:
    """BTC at 100 every 10 s for 6 hours, with one print at 110 half an hour in."""
    return [(10.0 * k, "BTC/USD", 110.0 if k == 180 else 100.0) for k in range(6 * 360)]


def test_defect3_compaction_keeps_the_highs_and_lows_of_each_bar(tmp_path: Path) -> None:
    e = Engine(rules_from(tmp_path, HIGH_RULE), {})
    alerts = feed(e, spike_ticks())
    (fired,) = firing(alerts)
    (resolved,) = [a for a in alerts if a.kind is AlertKind.RESOLVED]
    assert fired.ts == 1800.0
    s = e.series["BTC/USD"]
    assert s.high(3 * H, 2.5 * H) == 110.0  # the spike is 2h30m old and a 5-minute bar now
    # resolved when the spike's bar left the window, not when compaction ran
    assert 1800.0 + 2.5 * H <= resolved.ts <= 1800.0 + 2.5 * H + 300.0


def test_defect3_mean_is_weighted_by_time_not_by_point_count(tmp_path: Path) -> None:
    e = Engine(rules_from(tmp_path, HIGH_RULE), {})
    # an hour at 100 with a tick a second, then an hour at 200 with a tick every 5 minutes
    ticks = [(float(k), "BTC/USD", 100.0) for k in range(3600)]
    ticks += [(3600.0 + 300.0 * k, "BTC/USD", 200.0) for k in range(13)]
    feed(e, ticks, finish=False)
    s = e.series["BTC/USD"]
    assert s.mean(2 * H, 2 * H) == pytest.approx(150.0, abs=0.1)
    for _ in range(8):  # time passes: the 1-second hour becomes bars, the mean stays
        e.add(e.clock + H, "BTC/USD", 200.0)
    assert s.mean(2 * H, 2 * H) == pytest.approx(150.0, abs=0.1)


def restored_run(
    make: Callable[[], Engine], ticks: list[tuple[float, str, float]], at: int
) -> list[Alert]:
    """Feed ticks[:at], snapshot, restore into a fresh engine, feed the rest."""
    first = make()
    out = feed(first, ticks[:at], finish=False)
    second = make()
    second.restore(first.snapshot())
    return out + feed(second, ticks[at:])


def test_defect3_a_restore_mid_way_gives_the_alerts_of_a_straight_run(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, HIGH_RULE)
    ticks = spike_ticks()

    def make() -> Engine:
        return Engine(rules, {})

    straight = wire(feed(make(), ticks))
    assert len(straight) == 2  # fired and resolved
    for at in (1, 255, 360, 361, 700, 1111, 1500, 2000):
        assert wire(restored_run(make, ticks, at)) == straight, f"restored at tick {at}"


def test_defect3_a_restore_keeps_compaction_and_evaluation_bookkeeping(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, HIGH_RULE)
    e = Engine(rules, {}, evaluate_every=60.0)
    feed(e, spike_ticks()[:1000], finish=False)
    e2 = Engine(rules, {}, evaluate_every=60.0)
    e2.restore(e.snapshot())
    assert e2.snapshot() == e.snapshot()


def test_re_delivered_ticks_change_no_output(tmp_path: Path) -> None:
    """Polled feeds and reconnects send observations again; that must not change a thing,
    maintenance timing included (so live, which sees repeats, matches replay)."""
    rules = rules_from(tmp_path, HIGH_RULE)
    ticks = spike_ticks()
    rng = random.Random(3)
    noisy: list[tuple[float, str, float]] = []
    for k, x in enumerate(ticks):
        noisy.append(x)
        if rng.random() < 0.3:
            noisy.append(ticks[max(0, k - rng.randint(0, 50))])  # an earlier tick again
    a, b = Engine(rules, {}), Engine(rules, {})
    assert wire(feed(a, ticks)) == wire(feed(b, noisy))
    assert a.series["BTC/USD"].snapshot() == b.series["BTC/USD"].snapshot()
    assert b.stats.duplicates == len(noisy) - len(ticks)


# ---- defect 5: session caches see late ticks (first-start backfill) -------------------------

SESSION_RULE = """
[[rule]]
id = "europe_dollar"
pattern = "session_dollar"
severity = "info"
when = 'session_ret("USDX", "europe", "3d") < -1'
for = "0s"
cooldown = "10d"
summary = "europe {e:+.2f}%"
[rule.values]
e = 'session_ret("USDX", "europe", "3d")'
"""


def fx_hours(start: float, hours: int, drift_in_europe: float) -> list[tuple[float, str, float]]:
    """Hourly FX legs; EUR/USD rises (the dollar falls) in London hours only."""
    out = []
    eur = 1.10
    for h in range(hours):
        t = start + h * H
        if 8 <= datetime.fromtimestamp(t, UTC).hour < 12:
            eur *= 1 + drift_in_europe
        for sym, v in (("EUR/USD", eur), ("USD/JPY", 110.0), ("GBP/USD", 1.30)):
            out.append((t, sym, v))
    return out


def test_defect5_session_ret_sees_a_backfill_that_arrives_after_live_ticks(tmp_path: Path) -> None:
    config = Config()
    rules = rules_from(tmp_path, SESSION_RULE)

    def make() -> Engine:
        return Engine.from_config(rules, config.engine, config.sessions)

    start = utc("2024-03-04T00:00:00")  # a Monday, London on GMT
    history = fx_hours(start, 72, 0.002)  # three days the backfill fetches
    live = fx_hours(start + 72 * H, 30, 0.002)  # what the feeds deliver from the first start
    in_order = make()
    in_order.evaluate_from = live[0][0]
    expected = feed(in_order, history + live, finish=False)
    fresh = make()
    fresh.evaluate_from = live[0][0]  # a first start: the backfill only warms the windows
    # the feeds start at once; the backfill lands in the stream a few hours later
    got = feed(fresh, live[:30] + history + live[30:], finish=False)
    now = fresh.clock
    want = in_order.ctx.sessions.sum(in_order.series["USDX"], "europe", now, 3 * D)
    have = fresh.ctx.sessions.sum(fresh.series["USDX"], "europe", now, 3 * D)
    assert want is not None and want < -1
    assert have == pytest.approx(want, abs=1e-6)
    assert firing(expected) and firing(got)  # the rule can fire right after a first start


# ---- defect 6: gaps are not moves ---------------------------------------------------------


def daily_yields(
    start: float, days: int, level: float, rng: random.Random
) -> list[tuple[float, str, float]]:
    out = []
    for d in range(days):
        t = start + d * D
        if datetime.fromtimestamp(t, UTC).weekday() >= 5:
            continue
        level += rng.gauss(0, 0.03)
        out += [(t, "US10Y", round(level, 2)), (t, "US30Y", round(level + 0.6, 2))]
        out += [(t + k * H, "BTC/USD", 7000.0) for k in range(1, 24)]
    return out


def test_defect6_a_window_reaching_back_over_missing_data_is_unknown() -> None:
    rng = random.Random(6)
    before = daily_yields(utc("2020-02-20T20:00:00"), 50, 0.80, rng)
    after = daily_yields(utc("2021-05-05T20:00:00"), 20, 1.60, rng)  # 13 months later
    e = shipped_engine()
    alerts = feed(e, before + after)
    assert [a for a in firing(alerts, "rates_shock") if a.ts > utc("2020-05-01T00:00:00")] == []
    now = utc("2021-05-05T20:00:00")
    s = e.series["US10Y"]
    assert s.change(now, D) is None  # the value a day before is not known
    assert s.change(now + 2 * D, D) is not None  # once the window is past the gap it is
    assert e.gaps()[0][1] == utc("2021-05-05T20:00:00")


@pytest.mark.shared
def test_defect6_replaying_312_then_519_raises_no_86_bp_rates_shock() -> None:
    files = [
        shared_path("data", "history", "episode-312.csv"),
        shared_path("data", "history", "episode-519.csv"),
    ]
    alerts = feed(shipped_engine(), [(ts, s, v) for _, _, ts, s, v in read_history(files)])
    late = [a for a in firing(alerts, "rates_shock") if a.ts >= utc("2021-05-01T00:00:00")]
    assert late == [], [a.summary for a in late]
    # across the 13-month gap nothing of 2020 is compared with 2021: May 2021 raises what
    # the 519 file raises on its own
    alone = feed(shipped_engine(), [(ts, s, v) for _, _, ts, s, v in read_history(files[1:])])
    after = [a for a in firing(alerts) if a.ts >= utc("2021-05-01T00:00:00")]
    assert [(a.id, a.summary, a.values) for a in after] == [
        (a.id, a.summary, a.values) for a in firing(alone)
    ]
