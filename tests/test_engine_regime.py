"""The regime of `sigma`/`vol` is kept across evaluations and anchors (`bot.engine.functions`);
whatever it returns must be what a fresh `regime_vol` computes at that moment, or a restore
from a snapshot (which starts with nothing kept) would not give the alerts of a run that
never stopped. Checked on generated ticks with compaction, trimming, late ticks, backfills
into the settled past, duplicates and gaps, and on a series edited by hand."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.models import Kind
from bot.engine import functions
from bot.engine.engine import Engine
from bot.engine.functions import regime_fn, regime_step, regime_vol
from bot.engine.rulefile import load_rules
from bot.engine.series import Series
from bot.runtime.config import Config
from tests.tick_gen import GAP_AFTER, START, Market, expand, markets

CONFIG = Config.model_validate({"engine": {"gap_after": GAP_AFTER, "evaluate_every": "20s"}})

# short windows and lookbacks, so a few days of input move the anchor often
RULES = """
[[rule]]
id = "btc_sigma"
pattern = "custom"
severity = "info"
when = 'abs(sigma("BTC/USD", "30m", "12h")) > 1 or vol("BTC/USD", "2h", "1d") > 0.5'
for = "0s"
cooldown = "1h"
summary = "BTC {s:+.2f} sigma"
[rule.values]
s = 'sigma("BTC/USD", "30m", "12h")'

[[rule]]
id = "eur_sigma"
pattern = "custom"
severity = "info"
when = 'abs(sigma("EUR/USD", "1h", "1d", 0.1)) > 1.5 or abs(sigma("USDX", "10m", "6h")) > 2'
for = "0s"
cooldown = "1h"
summary = "EUR {s:+.2f} sigma"
[rule.values]
s = 'sigma("EUR/USD", "1h", "1d", 0.1)'
"""


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every regime lookup compared with a fresh computation; counts how it was answered."""
    seen: Counter[str] = Counter()
    at = functions._Regime.at

    def compared(
        r: Any, s: Series, anchor: float, window: float, step: float, n: int, shift: bool
    ) -> float | None:
        before = r.anchor
        v = at(r, s, anchor, window, step, n, shift)
        assert v == regime_vol(s, anchor, window, step, n), (s.symbol, anchor, window)
        seen["same anchor" if before == anchor else "new anchor"] += 1
        return v

    monkeypatch.setattr(functions._Regime, "at", compared)
    return seen


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(m=markets(max_days=2.5))
def test_the_kept_regime_is_a_fresh_computation_on_generated_ticks(
    tmp_path_factory: pytest.TempPathFactory, checked: Counter[str], m: Market
) -> None:
    d = tmp_path_factory.mktemp("rules")
    (d / "regime.toml").write_text(RULES)
    e = Engine.from_config(load_rules(d, CONFIG.sessions), CONFIG.engine, CONFIG.sessions)
    for t, s, v in expand(m):
        e.add(t, s, v)
    e.finish()
    assert checked["same anchor"] and checked["new anchor"]


class _Ctx:
    def __init__(self, s: Series) -> None:
        self.series = {s.symbol: s}
        self.now = 0.0


@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["correct", "late", "gap", "compact", "trim", "tick"]),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_the_kept_regime_sees_every_edit_of_the_settled_past(
    edits: list[tuple[str, float]],
) -> None:
    _edit_and_compare(edits)


def test_the_comparison_runs_on_known_regimes() -> None:
    # Hypothesis may draw edits (gaps) that leave every regime unknown; this fixed mix must not.
    edits = [("correct", 0.3), ("late", 0.6), ("tick", 0.2), ("compact", 0.5), ("trim", 0.1)]
    assert _edit_and_compare(edits) > 0


def _edit_and_compare(edits: list[tuple[str, float]]) -> int:
    """Apply `edits`, comparing the kept regime with a fresh one after each; how many known."""
    window, span = 3600.0, 12 * 3600.0
    s = Series("EUR/USD", Kind.PRICE)
    t = START
    for k in range(4000):  # a tick every 40 s or so (44 hours), some in the same second
        t += 59.5 if k % 3 else 0.25
        s.add(t, 1.0 + 0.001 * ((k * 7919) % 13))
    vol = regime_fn("EUR/USD", window, span, normalise=False)
    c = _Ctx(s)
    c.now = START + span
    step, n = regime_step(window), int((span - window) // regime_step(window))
    known = 0
    for what, x in edits:
        c.now += x * 2 * window
        at = c.now - span + x * (span - window)  # in the past the regime reads
        if what == "correct":
            i = bisect_right(s.ts, at // step * step) - 1  # a point a sample time reads
            if i >= 0:
                s.add(s.ts[i], s.values[i] * 1.01)
        elif what == "late":
            s.add(at + 0.5, 1.02)
        elif what == "gap":
            s.gaps.append((at, at + 600.0))
            s.gaps.sort()
        elif what == "compact":
            s.compact(at // 300 * 300)
        elif what == "trim":
            s.trim(at - x * span)
        else:
            t += 20.0
            s.add(t, 1.0 + x / 100)
        v = vol(c)
        fresh = regime_vol(s, c.now // step * step, window, step, n)
        assert v == (None if fresh is None else fresh * 100.0), what
        known += v is not None
    return known
