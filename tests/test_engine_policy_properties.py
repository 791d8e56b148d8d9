"""Property test of the alert policy over long generated input (tests/tick_gen.py): with rules
that escalate, remind, keep firing and inhibit each other, a restore from a snapshot taken at
any tick gives, byte for byte, the messages and final state of a run that never stopped.
And the generated input does exercise every kind of message (the property is not vacuous)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bot.core.models import AlertKind
from bot.engine.engine import Engine
from bot.engine.rulefile import load_rules
from bot.runtime.config import Config
from tests.test_engine_properties import restored_run, straight, wire
from tests.tick_gen import GAP_AFTER, Market, expand, markets, property_rules_dir

CONFIG = Config.model_validate({"engine": {"gap_after": GAP_AFTER, "evaluate_every": "20s"}})

POLICY_RULES = """
[[rule]]
id = "p_drop"
pattern = "crypto_crash"
severity = "info"
when = 'ret("BTC/USD", "15m") < -1.5'
for = "0s"
cooldown = "2h"
keep_firing_for = "5m"
repeat_interval = "20m"
summary = "BTC {r:+.2f}% in 15m, {d:.2f}% below its 2h high"
[rule.values]
r = 'ret("BTC/USD", "15m")'
d = 'drawdown("BTC/USD", "2h")'
[rule.escalate]
value = "d"
factor = 1.3
steps = [{ when = 'drawdown("BTC/USD", "2h") > 6', severity = "warning" }]

[[rule]]
id = "p_range"
pattern = "custom"
severity = "warning"
when = 'high("BTC/USD", "3h") > 1.05 * low("BTC/USD", "3h")'
for = "5m"
cooldown = "1h"
keep_firing_for = "15m"
repeat_interval = "30m"
summary = "BTC range {hi:,.1f} to {lo:,.1f}"
[rule.values]
hi = 'high("BTC/USD", "3h")'
lo = 'low("BTC/USD", "3h")'

[[inhibit]]
source = { rule = "p_range" }
target = { rule = ["p_drop", "btc_fast_*"], severity = ["info", "warning"] }
"""

_MAKE: list[Callable[[], Engine]] = []


def maker() -> Callable[[], Engine]:
    if not _MAKE:
        d = property_rules_dir(Path("/tmp/stressbot-policy-rules"))
        (d / "policy.toml").write_text(POLICY_RULES)
        rs = load_rules(d, CONFIG.sessions)
        _MAKE.append(lambda: Engine.from_config(rs, CONFIG.engine, CONFIG.sessions))
    return _MAKE[0]


#: two crashes in a day, a gap: escalations, reminders, inhibited drops, resolutions
CRASHES = Market(7, 1.0, 0.01, 0.005, ((0.5, 3.0),), ((0.3, 9.0, 40.0), (0.7, 6.0, 20.0)))


def test_the_generated_input_exercises_every_kind_of_message() -> None:
    alerts, e = straight(maker(), expand(CRASHES))
    kinds = {a.kind for a in alerts if a.rule.startswith("p_")}
    assert kinds == set(AlertKind), kinds
    assert e.stats.inhibited["p_drop"] > 0


@settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(m=markets(max_days=1.5), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
@example(m=CRASHES, cuts=[0.31, 0.32, 0.5, 0.71])
def test_a_restore_at_any_tick_gives_the_same_policy_messages(m: Market, cuts: list[float]) -> None:
    ticks = expand(m)
    want, ref = straight(maker(), ticks)
    got, e = restored_run(maker(), ticks, cuts)
    assert wire(got) == wire(want)
    assert e.snapshot() == ref.snapshot()
