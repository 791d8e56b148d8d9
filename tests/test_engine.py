"""The engine's rule life cycle, on event time: pending, for, firing, cooldown, resolved."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bot.core.models import AlertKind
from bot.engine.engine import USDX_CONSTANT, Engine, usdx
from bot.engine.rulefile import RuleSet, load_rules

H = 3600.0
D = 86400.0


def rules_from(tmp_path: Path, body: str) -> RuleSet:
    (tmp_path / "r.toml").write_text(body)
    return load_rules(tmp_path, ["asia", "europe", "us"])


DROP_RULE = """
[[rule]]
id = "btc_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "1h") < -5'
for = "{for_}"
cooldown = "{cooldown}"
summary = "BTC {{r:+.1f}}%"
[rule.values]
r = 'ret("BTC/USD", "1h")'
"""


def engine(tmp_path: Path, for_: str = "0s", cooldown: str = "1d", **kw: float) -> Engine:
    return Engine(
        rules_from(tmp_path, DROP_RULE.format(for_=for_, cooldown=cooldown)),
        {},
        wild_print_pct=kw.get("wild", 0.0),
    )


def feed(e: Engine, points: list[tuple[float, float]], symbol: str = "BTC/USD") -> list:
    out = []
    for t, v in points:
        e.add(t, symbol, v)
        out += e.take_alerts()
    return out + e.finish()


def test_alert_fires_on_event_time_with_the_numbers_behind_it(tmp_path: Path) -> None:
    alerts = feed(engine(tmp_path), [(0, 100.0), (H, 90.0), (2 * H, 80.0)])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.rule, a.kind, a.ts) == ("btc_drop", AlertKind.FIRING, H)
    assert a.values == {"r": pytest.approx(-10.0)}
    assert a.summary == "BTC -10.0%"
    assert a.id == "btc_drop@1970-01-01T01:00:00Z"


def test_condition_must_hold_for_the_for_duration(tmp_path: Path) -> None:
    e = engine(tmp_path, for_="2h")
    # falls 10% at 1h and keeps falling each hour, so the condition holds from 1h on
    pts = [(i * H, 100.0 * 0.9**i) for i in range(0, 5)]
    alerts = [a for a in feed(e, pts) if a.kind is AlertKind.FIRING]
    assert [a.ts for a in alerts] == [3 * H]


def test_a_blip_shorter_than_for_raises_nothing(tmp_path: Path) -> None:
    e = engine(tmp_path, for_="2h")
    assert feed(e, [(0, 100.0), (H, 90.0), (2 * H, 90.0), (3 * H, 90.0)]) == []
    assert e.states["btc_drop"].state == "inactive"


def test_resolved_message_when_the_condition_clears(tmp_path: Path) -> None:
    alerts = feed(engine(tmp_path), [(0, 100.0), (H, 90.0), (2 * H, 91.0)])
    assert [(a.kind, a.ts) for a in alerts] == [(AlertKind.FIRING, H), (AlertKind.RESOLVED, 2 * H)]
    assert alerts[1].summary.startswith("Resolved: ")


def test_a_new_episode_inside_the_cooldown_is_absorbed(tmp_path: Path) -> None:
    e = engine(tmp_path, cooldown="1d")
    pts = [
        (0, 100.0),
        (H, 90.0),
        (2 * H, 91.0),
        (3 * H, 80.0),
        (4 * H, 81.0),
        (D + 5 * H, 81.0),
        (D + 6 * H, 70.0),
    ]
    firing = [a.ts for a in feed(e, pts) if a.kind is AlertKind.FIRING]
    assert firing == [H, D + 6 * H]
    assert e.stats.absorbed["btc_drop"] == 1


def test_unknown_condition_changes_nothing(tmp_path: Path) -> None:
    e = engine(tmp_path)
    e.add(0, "SPX", 100.0)
    e.add(H, "SPX", 101.0)
    assert e.finish() == []
    assert e.states["btc_drop"].last_value is None


def test_late_tick_is_placed_in_time_order(tmp_path: Path) -> None:
    e = engine(tmp_path)
    for t, v in [(0, 100.0), (2 * H, 95.0), (H, 97.0)]:
        e.add(t, "BTC/USD", v)
    assert e.series["BTC/USD"].ts == [0, H, 2 * H]
    assert e.stats.late == 1


def test_a_single_wild_print_is_dropped_and_never_alerts(tmp_path: Path) -> None:
    e = engine(tmp_path, wild=15.0)
    pts = [(0, 100.0), (10, 100.5), (20, 60.0), (30, 100.2), (3700, 100.1)]
    assert feed(e, pts) == []
    assert e.stats.wild_prints == 1
    assert 60.0 not in e.series["BTC/USD"].values


def test_a_confirmed_big_move_is_kept(tmp_path: Path) -> None:
    e = engine(tmp_path, wild=15.0)
    pts = [
        (0, 100.0),
        (H, 100.0),
        (2 * H, 100.1),
        (2 * H + 10, 80.0),
        (2 * H + 20, 79.5),
        (2 * H + 100, 79.4),
    ]
    alerts = feed(e, pts)
    assert e.series["BTC/USD"].values[2:5] == [100.1, 80.0, 79.5]
    assert alerts and alerts[0].kind is AlertKind.FIRING


def test_snapshot_restores_the_same_state(tmp_path: Path) -> None:
    e = engine(tmp_path, for_="2h")
    for t, v in [(0, 100.0), (H, 90.0), (2 * H, 81.0)]:
        e.add(t, "BTC/USD", v)
    e2 = engine(tmp_path, for_="2h")
    e2.restore(e.snapshot())
    for x in (e, e2):
        x.add(3 * H, "BTC/USD", 70.0)
        x.add(4 * H, "BTC/USD", 60.0)
    assert [a.id for a in e.finish()] == [a.id for a in e2.finish()] != []


def test_usdx_matches_the_ice_constant_when_every_leg_is_one() -> None:
    legs = dict.fromkeys(("EUR/USD", "USD/JPY", "GBP/USD", "USD/CAD", "USD/SEK", "USD/CHF"), 1.0)
    assert usdx(legs) == pytest.approx(USDX_CONSTANT)


def test_usdx_from_real_cross_rates_is_near_the_quoted_index() -> None:
    # 2020-03-19, a day the ICE index settled near 102.8 (rates rounded from the dev file).
    legs = {
        "EUR/USD": 1.0693,
        "USD/JPY": 110.8,
        "GBP/USD": 1.1644,
        "USD/CAD": 1.4507,
        "USD/SEK": 10.112,
        "USD/CHF": 0.9817,
    }
    assert usdx(legs) == pytest.approx(102.8, abs=0.5)


def test_usdx_renormalises_over_the_legs_present(tmp_path: Path) -> None:
    e = engine(tmp_path)
    e.add(0, "EUR/USD", 1.10)
    e.add(0, "USD/JPY", 110.0)
    e.add(H, "BTC/USD", 1.0)
    v = e.series["USDX"].last()
    w = 0.576 + 0.136
    assert v == pytest.approx(USDX_CONSTANT * 1.10 ** (-0.576 / w) * 110.0 ** (0.136 / w))
    assert e.stats.usdx_partial == 1


def test_sofr_iorb_uses_the_iorb_in_force_on_sofrs_business_day(tmp_path: Path) -> None:
    e = engine(tmp_path)
    # IORB cut at 00:00 New York on day 2 (05:00 UTC); SOFR for day 1 published on day 2 at 12:00
    e.add(0, "IORB", 2.10)
    e.add(D + 5 * H, "IORB", 1.80)
    e.add(D + 12 * H, "SOFR", 2.55)
    e.add(D + 13 * H, "BTC/USD", 1.0)
    assert e.series["SOFR-IORB"].last() == pytest.approx(45.0)
    assert not math.isnan(e.series["SOFR-IORB"].last() or math.nan)


def test_ticks_within_one_second_keep_only_the_latest(tmp_path: Path) -> None:
    e = engine(tmp_path)
    for t, v in [(100.1, 1.0), (100.5, 2.0), (100.9, 3.0), (101.2, 4.0)]:
        e.add(t, "SPX", v)
    assert e.series["SPX"].ts == [100.9, 101.2]
    assert e.series["SPX"].values == [3.0, 4.0]


def test_old_history_is_compacted_to_five_minute_bars(tmp_path: Path) -> None:
    e = engine(tmp_path)
    for k in range(4 * 3600):  # a tick a second for four hours
        e.add(float(k), "SPX", 100.0 + k)
    s = e.series["SPX"]
    # maintenance ran at 3h (hourly, event time): history older than 1h became 5-minute bars
    old = [t for t in s.ts if t < H]
    assert len(old) == 12 and all(t % 300 == 299 for t in old)  # each bar's last tick
    assert len([t for t in s.ts if t >= H]) == 3 * 3600  # the last 3 hours are untouched
    assert s.value_at(1799.0) == 100.0 + 1799  # bar closes keep their exact values


def test_rules_are_evaluated_at_most_once_per_evaluate_every(tmp_path: Path) -> None:
    e = Engine(
        rules_from(tmp_path, DROP_RULE.format(for_="0s", cooldown="1d")), {}, evaluate_every=10.0
    )
    for k in range(100):
        e.add(float(k), "BTC/USD", 100.0)
    assert e.stats.evaluations == 10
