"""Alert policy on event time (bot.engine.lifecycle): escalation instead of absorption,
reminders (`repeat_interval`), hysteresis (`keep_firing_for`), "no news is no resolution",
and the chart points an alert carries. Inhibition is tests/test_engine_inhibition.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.models import CHART_SPAN, Alert, AlertKind
from bot.engine.engine import Engine
from bot.engine.lifecycle import CHART_POINTS, ESCALATE_EVERY, downsample
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules

M = 60.0
H = 3600.0
D = 86400.0

BASE = """
[[rule]]
id = "low"
pattern = "crypto_crash"
severity = "{severity}"
when = 'last("BTC/USD") < 50'
for = "0s"
cooldown = "{cooldown}"
summary = "BTC {{btc:,.0f}}, {{drop:.1f}} below 100"
{extra}
[rule.values]
btc = 'last("BTC/USD")'
drop = '100 - last("BTC/USD")'
{tables}
"""


def rules_from(tmp_path: Path, body: str) -> RuleSet:
    (tmp_path / "r.toml").write_text(body)
    return load_rules(tmp_path, ["asia", "europe", "us"])


def engine(
    tmp_path: Path,
    *,
    extra: str = "",
    tables: str = "",
    cooldown: str = "1d",
    severity: str = "info",
) -> Engine:
    body = BASE.format(extra=extra, tables=tables, cooldown=cooldown, severity=severity)
    return Engine(rules_from(tmp_path, body), {}, wild_print_pct=0.0)


def feed(e: Engine, points: list[tuple[float, str, float]]) -> list[Alert]:
    out: list[Alert] = []
    for t, s, v in points:
        e.add(t, s, v)
        out += e.take_alerts()
    return out + e.finish()


def btc(points: list[tuple[float, float]]) -> list[tuple[float, str, float]]:
    return [(t, "BTC/USD", v) for t, v in points]


def kinds(alerts: list[Alert]) -> list[tuple[str, float]]:
    return [(a.kind.value, a.ts) for a in alerts]


ESCALATE = """
[rule.escalate]
value = "drop"
factor = 1.5
"""


def test_without_escalation_an_episode_inside_the_cooldown_is_absorbed(tmp_path: Path) -> None:
    e = engine(tmp_path)
    alerts = feed(e, btc([(0, 40.0), (H, 60.0), (2 * H, 5.0), (3 * H, 5.0)]))
    assert kinds(alerts) == [("firing", 0), ("resolved", H)]
    assert e.stats.absorbed["low"] == 1


def test_a_worse_episode_inside_the_cooldown_is_escalated_with_old_and_new_values(
    tmp_path: Path,
) -> None:
    e = engine(tmp_path, tables=ESCALATE)
    # fires at drop 60, resolves, comes back inside the cooldown: drop 70 (not 1.5 x 60:
    # absorbed), then drop 95 (1.58 x 60: worse)
    pts = [(0, 40.0), (H, 60.0), (2 * H, 30.0), (3 * H, 5.0), (4 * H, 5.0)]
    alerts = feed(e, btc(pts))
    assert kinds(alerts) == [("firing", 0), ("resolved", H), ("escalated", 3 * H)]
    esc = alerts[2]
    assert esc.id == "low@1970-01-01T03:00:00Z:escalated"
    assert esc.summary.startswith("Worse (drop 60.0 -> 95.0): BTC 5, 95.0 below 100")
    assert esc.values["drop"] == pytest.approx(95.0)
    # the escalated episode was announced, so its end is announced too
    more = feed(e, btc([(5 * H, 80.0)]))
    assert kinds(more) == [("resolved", 5 * H)]


def test_a_still_firing_episode_that_gets_worse_is_escalated_once_per_step_of_worse(
    tmp_path: Path,
) -> None:
    e = engine(tmp_path, tables=ESCALATE)
    # drop 60 -> 80 (1.33: not yet) -> 91 (1.52 x 60: escalated) -> 95 (1.04 x 91: no)
    pts = [(0, 40.0), (10 * M, 20.0), (20 * M, 9.0), (30 * M, 5.0), (40 * M, 5.0)]
    alerts = feed(e, btc(pts))
    assert kinds(alerts) == [("firing", 0), ("escalated", 20 * M)]
    assert "drop 60.0 -> 91.0" in alerts[1].summary


def test_escalation_is_checked_at_most_every_minute_of_event_time(tmp_path: Path) -> None:
    e = engine(tmp_path, tables=ESCALATE)
    pts = [(0, 40.0), (1, 5.0), (2, 5.0), (ESCALATE_EVERY, 5.0), (ESCALATE_EVERY + 1, 5.0)]
    alerts = feed(e, btc(pts))
    assert kinds(alerts) == [("firing", 0), ("escalated", ESCALATE_EVERY)]


def test_a_severity_step_escalates_the_severity(tmp_path: Path) -> None:
    steps = """
[rule.escalate]
steps = [{ when = 'last("BTC/USD") < 20', severity = "warning" }]
"""
    e = engine(tmp_path, tables=steps)
    pts = [(0, 40.0), (10 * M, 30.0), (20 * M, 15.0), (30 * M, 10.0), (40 * M, 60.0)]
    alerts = feed(e, btc(pts))
    assert kinds(alerts) == [("firing", 0), ("escalated", 20 * M), ("resolved", 40 * M)]
    assert [a.severity for a in alerts] == ["info", "warning", "warning"]
    assert "severity info -> warning" in alerts[1].summary


def test_a_first_alert_already_worse_than_a_step_carries_the_step_severity(
    tmp_path: Path,
) -> None:
    steps = """
[rule.escalate]
steps = [{ when = 'last("BTC/USD") < 20', severity = "warning" }]
"""
    alerts = feed(engine(tmp_path, tables=steps), btc([(0, 10.0), (H, 10.0)]))
    assert [(a.kind, a.severity) for a in alerts] == [(AlertKind.FIRING, "warning")]


def test_repeat_interval_re_sends_a_long_firing_alert_as_a_reminder(tmp_path: Path) -> None:
    e = engine(tmp_path, extra='repeat_interval = "1h"')
    pts = [(k * 10 * M, 40.0) for k in range(14)] + [(140 * M, 60.0)]
    alerts = feed(e, btc(pts))
    assert kinds(alerts) == [
        ("firing", 0),
        ("reminder", H),
        ("reminder", 2 * H),
        ("resolved", 140 * M),
    ]
    assert alerts[1].id == "low@1970-01-01T01:00:00Z:reminder"
    assert alerts[1].summary.startswith("Still firing since 1970-01-01T00:00:00Z: BTC 40")


def test_no_reminder_by_default(tmp_path: Path) -> None:
    pts = [(k * H, 40.0) for k in range(30)]
    assert kinds(feed(engine(tmp_path), btc(pts))) == [("firing", 0)]


def test_keep_firing_for_swallows_a_flicker_and_resolves_after_it(tmp_path: Path) -> None:
    flicker = [(0, 40.0), (10 * M, 55.0), (20 * M, 45.0), (30 * M, 55.0), (50 * M, 52.0)]
    plain = feed(engine(tmp_path, cooldown="0s"), btc(flicker))
    assert kinds(plain) == [
        ("firing", 0),
        ("resolved", 10 * M),
        ("firing", 20 * M),
        ("resolved", 30 * M),
    ]
    kept = feed(engine(tmp_path, cooldown="0s", extra='keep_firing_for = "15m"'), btc(flicker))
    # false at 10m (back at 20m: kept), false from 30m: resolved once it stayed so for 15m
    assert kinds(kept) == [("firing", 0), ("resolved", 50 * M)]


DAILY = """
[[rule]]
id = "yield_jump"
pattern = "rates_shock"
severity = "info"
when = 'bp("US10Y", "1d") >= 10'
for = "0s"
cooldown = "5d"
summary = "US 10y {{d:+.0f}} bp"
{extra}
[rule.values]
d = 'bp("US10Y", "1d")'
"""

FRI = 4 * D + 20 * H  # the last print before a closure (the engine knows no weekdays)


def test_a_daily_rule_is_not_resolved_by_the_window_sliding_past_a_market_that_did_not_print(
    tmp_path: Path,
) -> None:
    e = Engine(rules_from(tmp_path, DAILY.format(extra="")), {}, wild_print_pct=0.0)
    ticks = [(FRI - D, "US10Y", 1.00), (FRI, "US10Y", 1.15)]
    # the weekend: BTC trades, the clock moves, US10Y does not print; its 1-day window from
    # Saturday on compares Friday's close with itself (0 bp), which says nothing new
    ticks += [(FRI + k * H, "BTC/USD", 100.0) for k in range(1, 70)]
    alerts = feed(e, ticks)
    assert kinds(alerts) == [("firing", FRI)]
    assert e.states["yield_jump"].state == "firing"
    # Monday's print says the move is over: resolved on news
    mon = FRI + 3 * D
    more = feed(e, [(mon, "US10Y", 1.16)])
    assert kinds(more) == [("resolved", mon)]


def test_keep_firing_for_counts_from_the_first_false_evaluation_on_news(tmp_path: Path) -> None:
    e = Engine(
        rules_from(tmp_path, DAILY.format(extra='keep_firing_for = "2d"')), {}, wild_print_pct=0
    )
    ticks = [(FRI - D, "US10Y", 1.00), (FRI, "US10Y", 1.15), (FRI + D, "US10Y", 1.16)]
    ticks += [(FRI + D + k * H, "BTC/USD", 100.0) for k in range(1, 60)]
    alerts = feed(e, ticks)
    assert kinds(alerts) == [("firing", FRI), ("resolved", FRI + 3 * D)]


def test_a_restore_at_every_tick_gives_the_same_escalations_reminders_and_resolutions(
    tmp_path: Path,
) -> None:
    tables = ESCALATE
    extra = 'repeat_interval = "30m"\nkeep_firing_for = "10m"'
    pts = btc(
        [(k * 5 * M, v) for k, v in enumerate([40, 45, 30, 55, 45, 20, 8, 8, 60, 60, 30, 5, 5])]
        + [(70 * M + k * 5 * M, 60.0) for k in range(6)]
    )
    want = feed(engine(tmp_path, extra=extra, tables=tables), pts)
    assert {a.kind for a in want} >= {AlertKind.ESCALATED, AlertKind.REMINDER}
    got: list[Alert] = []
    e = engine(tmp_path, extra=extra, tables=tables)
    for t, s, v in pts:
        e.add(t, s, v)
        got += e.take_alerts()
        snap = e.snapshot()
        e = engine(tmp_path, extra=extra, tables=tables)
        e.restore(snap)
    got += e.finish()
    assert [a.dumps() for a in got] == [a.dumps() for a in want]


def test_alert_kinds_are_read_back_and_an_unknown_kind_is_read_as_firing() -> None:
    a = Alert("x@t:escalated", 0.0, "x", "custom", "info", "s", kind=AlertKind.ESCALATED)
    assert Alert.loads(a.dumps()).kind is AlertKind.ESCALATED
    raw = a.dumps().replace(b'"escalated"', b'"from-the-future"', 1)
    assert b"from-the-future" in raw
    assert Alert.loads(raw).kind is AlertKind.FIRING


# ---- chart points ----------------------------------------------------------------------------


def test_downsample_keeps_the_ends_and_every_slice_extreme() -> None:
    pts = [(float(i), float((i * 7919) % 1000)) for i in range(20_000)]
    pts[12_345] = (12_345.0, -50.0)  # a wick
    pts[777] = (777.0, 5_000.0)
    out = downsample(pts, 300)
    assert len(out) <= 300
    assert out[0] == pts[0] and out[-1] == pts[-1]
    assert (12_345.0, -50.0) in out and (777.0, 5_000.0) in out
    assert [t for t, _ in out] == sorted({t for t, _ in out})
    assert downsample(pts[:100], 300) == pts[:100]


def test_an_alert_carries_at_most_a_phone_charts_worth_of_points_with_the_trigger(
    tmp_path: Path,
) -> None:
    body = BASE.format(extra="", tables="", cooldown="1d", severity="info").replace(
        """when = 'last("BTC/USD") < 50'""",
        """when = 'last("BTC/USD") < 0.5 * high("BTC/USD", "1d")'""",
    )
    e = Engine(rules_from(tmp_path, body), {}, wild_print_pct=0.0)
    assert e.rules[0].window == D
    pts = [(float(k), 80.0 + (k % 13)) for k in range(10_000)]
    pts[1_500] = (1_500.0, 70.0)
    pts += [(10_000.0, 40.0)]
    alerts = feed(e, btc(pts))
    a = next(x for x in alerts if x.kind is AlertKind.FIRING)
    chart = a.chart["BTC/USD"]
    assert len(chart) <= CHART_POINTS
    assert chart[-1] == (10_000.0, 40.0)  # the point that fired it
    assert 70.0 in [v for _, v in chart]  # inside a 5-minute bar by now
    assert max(v for _, v in chart) == 92.0


# ---- the shipped rules ---------------------------------------------------------------------


def test_the_policy_rule_tests_of_the_shipped_rules_pass() -> None:
    from bot.runtime.config import Config
    from bot.runtime.ruletest import load_tests, run_test

    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    path = Path(__file__).resolve().parent.parent / "rules" / "tests" / "policy.toml"
    results = [run_test(t, path, rules, config) for t in load_tests(path)]
    assert len(results) == 3
    assert [r.problems for r in results] == [[], [], []]
    assert all(r.passed for r in results)


def test_only_the_dash_for_cash_is_ever_critical_and_it_holds_back_the_lesser_alerts() -> None:
    rules = load_rules(default_rules_dir(), ["asia", "europe", "us"])
    for r in rules.rules:
        steps = [s.severity for s in r.escalate.steps] if r.escalate else []
        critical = "critical" in [r.severity, *steps]
        assert critical == (r.pattern == "liquidity_crisis"), r.id
    [inh] = rules.inhibits
    assert inh.source.matches("liquidity_crisis", "liquidity_crisis", "critical")
    for rid, pattern in [
        ("crypto_crash", "crypto_crash"),
        ("rates_shock", "rates_shock"),
        ("rates_flight", "rates_shock"),
        ("feed:kraken", "feed_health"),
    ]:
        assert inh.target.matches(rid, pattern, "warning")
    assert not inh.target.matches("funding_stress", "funding_stress", "warning")


def test_an_alert_carries_the_span_its_chart_shows_not_its_regimes_year(tmp_path: Path) -> None:
    body = BASE.format(extra="", tables="", cooldown="1d", severity="info").replace(
        """when = 'last("BTC/USD") < 50'""",
        """when = 'last("BTC/USD") < 50 and known(sigma("BTC/USD", "1d", "365d"))'""",
    )
    e = Engine(rules_from(tmp_path, body), {}, wild_print_pct=0.0)
    assert e.rules[0].window > 365 * D
    hours = 400 * 24  # 400 days of hourly prints, then the fall
    pts = [(k * H, 100.0 + (k % 7)) for k in range(hours)] + [(hours * H, 40.0)]
    a = next(x for x in feed(e, btc(pts)) if x.kind is AlertKind.FIRING)
    chart = a.chart["BTC/USD"]
    assert chart[0][0] >= a.ts - CHART_SPAN - H  # one point at or before the span's start
    assert len(chart) == 241  # every hour of the 10 days shown, and the one before
    assert chart[-1] == (hours * H, 40.0)
