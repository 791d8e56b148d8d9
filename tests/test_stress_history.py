"""The stress gauge and 'how much like' on the real history files (../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.models import AlertKind, iso_utc, parse_iso_utc
from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.stress_history import like_at, stress_series
from tests.conftest import shared_path

pytestmark = pytest.mark.shared

#: months of dev-2019-2021 inside the library's episodes (and the COVID run-up and rebound)
EPISODE_MONTHS = ("2019-09", "2020-02", "2020-03", "2020-04", "2021-05")


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(default_rules_dir(), Config().sessions)


def first_firing(alerts: list, rule: str) -> float:  # type: ignore[type-arg]
    return min(a.ts for a in alerts if a.rule == rule and a.kind is AlertKind.FIRING)


def test_312_score_is_above_80_by_the_first_liquidity_crisis_alert(rules: RuleSet) -> None:
    path = shared_path("data", "history", "episode-312.csv")
    h = stress_series([path], rules)
    alert = first_firing(h.alerts, "liquidity_crisis")
    before = [p for p in h.points if p.ts <= alert and p.score is not None]
    peak = max(before, key=lambda p: p.score or 0.0)
    assert peak.score is not None and peak.score > 80, (iso_utc(peak.ts), peak.score)
    # the alert itself carries the gauge and the closest episode
    a = next(a for a in h.alerts if a.rule == "liquidity_crisis")
    assert a.values["stress"] is not None and a.values["stress"] > 70
    assert any(k.startswith("like_") for k in a.values)


def test_519_crypto_dominates_and_looks_more_like_519_than_312(rules: RuleSet) -> None:
    path = shared_path("data", "history", "episode-519.csv")
    h = stress_series([path], rules)
    crash = first_firing(h.alerts, "crypto_crash")
    at = next(p for p in h.points if p.ts >= crash)
    top = max(at.components, key=lambda c: c.contribution)
    assert top.name == "crypto", at.to_json()
    rep = like_at([path], rules, Config(), parse_iso_utc("2021-05-19T16:00:00Z"))
    rank = [lk.episode for lk in rep.likes]
    assert rank.index("519") < rank.index("312"), [(lk.episode, lk.similarity) for lk in rep.likes]
    assert rep.reading.component("crypto").contribution == max(
        c.contribution for c in rep.reading.components
    )


def test_ordinary_months_of_2019_2021_stay_low(rules: RuleSet) -> None:
    path: Path = shared_path("data", "history", "dev-2019-2021.csv.gz")
    h = stress_series([path], rules, every=6 * 3600.0)
    ordinary = sorted(
        p.score
        for p in h.points
        if p.score is not None and not iso_utc(p.ts).startswith(EPISODE_MONTHS)
    )
    n = len(ordinary)
    assert n > 3000
    median, p90 = ordinary[n // 2], ordinary[int(n * 0.9)]
    assert median < 10, median
    assert p90 < 25, p90
    assert sum(s > 50 for s in ordinary) / n < 0.02
    assert ordinary[-1] < 85
    covid = [p.score for p in h.points if iso_utc(p.ts).startswith("2020-03") and p.score]
    assert max(covid) > 95
