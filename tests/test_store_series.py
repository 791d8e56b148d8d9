"""The chart series the store keeps (for /chart, /status, /sessions): bounded in time and
in resolution whatever the tick rate and whatever the rules look back, in live commits and
after a replay."""

from __future__ import annotations

import pytest

from bot.engine.engine import STORE_KEEP, STORE_RESOLUTION, Engine
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.store.redis_store import Store
from tests.conftest import shared_path
from tests.test_replay import replay

T0 = 1_700_000_040.0  # on a whole minute
DAY = 86400.0


def engine() -> Engine:
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    return Engine.from_config(rules, config.engine, config.sessions)


def minutes(points: list[tuple[float, float]]) -> list[float]:
    return [t // STORE_RESOLUTION for t, _ in points]


def test_store_points_are_one_a_minute_whatever_the_tick_rate() -> None:
    e = engine()
    for k in range(600):  # ten minutes of a BTC tick every second
        e.add(T0 + k, "BTC/USD", 50_000.0 + k)
    pts = e.points_since({})["BTC/USD"]
    assert minutes(pts) == [T0 // 60 + m for m in range(10)]
    assert pts[0] == (T0, 50_000.0)  # the first point of each minute
    assert pts[1] == (T0 + 60, 50_060.0)


def test_points_sent_commit_by_commit_never_repeat_a_minute() -> None:
    e = engine()
    sent: dict[str, float] = {}
    stored: list[tuple[float, float]] = []
    for k in range(600):  # a commit after every tick, as a busy live engine might
        e.add(T0 + k + 0.5, "BTC/USD", 50_000.0 + k)
        pts = e.points_since(sent).get("BTC/USD", [])
        if pts:
            stored += pts
            sent["BTC/USD"] = pts[-1][0]
    assert len(stored) == 10
    assert len(set(minutes(stored))) == len(stored)


def test_points_not_before_a_time_start_there() -> None:
    e = engine()
    for k in range(0, 3600, 10):
        e.add(T0 + k, "BTC/USD", 1.0 + k)
    pts = e.points_since({}, not_before=T0 + 1800)["BTC/USD"]
    assert pts[0][0] == T0 + 1800 and len(pts) == 30


def test_store_keeps_forty_days_whatever_the_rules_look_back() -> None:
    e = engine()
    assert max(r.window for r in e.rules) > 300 * DAY  # the default rules' regimes
    assert e.chart_retention() == STORE_KEEP == 40 * DAY


@pytest.mark.shared
async def test_a_replay_leaves_forty_days_of_chart_series_in_the_store(store: Store) -> None:
    alerts = await replay(store, shared_path("data", "history", "episode-312.csv"))
    assert alerts
    for sym in ("BTC/USD", "US10Y", "USDX"):
        pts = await store.series(sym)
        assert pts, sym
        assert pts[-1][0] - pts[0][0] <= STORE_KEEP
        assert len(set(minutes(pts))) == len(pts)
