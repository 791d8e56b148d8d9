"""Property tests of the engine over long generated input (tests/tick_gen.py): days of
second-level ticks for several symbols, with duplicates, out-of-order ticks, bursts, gaps in
the input and daily prints.

(a) A restore from a snapshot taken at any tick gives, byte for byte, the alerts (ids,
    summaries, values, chart points) and the final state of a run that never stopped.
(b) The live loop's core (`bot.runtime.live.consume`), reading a stream in batches of any
    size, with backlogs left by downtime and restarts from its checkpoint, gives the alerts
    of feeding the same ticks in order. tests/test_live_catchup.py runs it on real Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bot.core.models import Alert, Tick
from bot.engine.engine import Engine
from bot.engine.rulefile import RuleSet, load_rules
from bot.runtime.config import Config
from bot.runtime.live import consume
from tests.tick_gen import GAP_AFTER, Market, Tick3, expand, markets, property_rules_dir

CONFIG = Config.model_validate({"engine": {"gap_after": GAP_AFTER, "evaluate_every": "20s"}})
_RULES: list[RuleSet] = []


def rules(tmp: Path) -> RuleSet:
    if not _RULES:
        _RULES.append(load_rules(property_rules_dir(tmp), CONFIG.sessions))
    return _RULES[0]


def maker(tmp: Path) -> Callable[[], Engine]:
    rs = rules(tmp)
    return lambda: Engine.from_config(rs, CONFIG.engine, CONFIG.sessions)


def wire(alerts: list[Alert]) -> list[bytes]:
    return [a.dumps() + repr(a.ts).encode() for a in alerts]


def straight(make: Callable[[], Engine], ticks: list[Tick3]) -> tuple[list[Alert], Engine]:
    e = make()
    out: list[Alert] = []
    for t, s, v in ticks:
        e.add(t, s, v)
        if e.pending:
            out += e.take_alerts()
    return out + e.finish(), e


def restored_run(
    make: Callable[[], Engine], ticks: list[Tick3], cuts: list[float]
) -> tuple[list[Alert], Engine]:
    """The alerts of a run over `ticks` restarted from its snapshot at each of the `cuts`
    (fractions of the ticks), and the engine it ends with."""
    points = sorted({int(c * len(ticks)) for c in cuts})
    e = make()
    got: list[Alert] = []
    k = 0
    for p in [*points, len(ticks)]:
        for t, s, v in ticks[k:p]:
            e.add(t, s, v)
            if e.pending:
                got += e.take_alerts()
        k = p
        if p < len(ticks):  # a restart: everything the engine knows goes through JSON
            snap = e.snapshot()
            e = make()
            e.restore(snap)
    return got + e.finish(), e


# The input is expanded from a seed, so shrinking it teaches nothing: a failure is reported
# with the drawn Market and cut points, which reproduce it exactly.
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


#: a first-start backfill arriving late, then a crash: session caches and derived series
BACKFILLED = Market(1, 1.5, 0.01, 0.005, (), ((0.6, 8.0, 30.0),), backfill=0.3)


@SETTINGS
@given(m=markets(max_days=2.0), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
@example(m=BACKFILLED, cuts=[0.5])
def test_a_restore_at_any_tick_gives_the_output_of_a_run_that_never_stopped(
    m: Market, cuts: list[float]
) -> None:
    make = maker(Path("/tmp/stressbot-property-rules"))
    ticks = expand(m)
    want, ref = straight(make, ticks)
    got, e = restored_run(make, ticks, cuts)
    assert wire(got) == wire(want)
    assert e.snapshot() == ref.snapshot()


def run_live(
    make: Callable[[], Engine], ticks: list[Tick3], plan: list[tuple[str, int, int]]
) -> list[Alert]:
    """The live loop on an in-memory stream. `plan`: ("live", n, batch) writes n ticks and
    lets the loop catch up with them while wall time follows the newest tick written;
    ("down", n, batch) stops the engine (checkpoint), writes n ticks meanwhile, and restarts
    it with wall time at the end of that backlog."""
    stream: list[tuple[str, Tick]] = []
    e = make()
    pos = 0
    wall = -1e18
    out: list[Alert] = []
    written = 0

    def catch_up(batch: int) -> None:
        nonlocal pos
        while True:
            got = stream[pos : pos + batch]
            pos += len(got)
            caught_up = len(got) < batch
            consume(e, got, caught_up=caught_up, now=wall)
            out.extend(e.take_alerts())
            if caught_up:
                return

    for what, n, batch in [*plan, ("live", len(ticks), 1000)]:
        chunk = ticks[written : written + n]
        written += len(chunk)
        if what == "down":
            snap = e.snapshot()
            e = make()
            e.restore(snap)
        stream += [(f"{len(stream) + i}-0", Tick(t, s, v)) for i, (t, s, v) in enumerate(chunk)]
        if what == "down" and chunk:
            wall = max(wall, max(t for t, _, _ in chunk))
        catch_up(batch)
        if chunk:
            wall = max(wall, max(t for t, _, _ in chunk))
    return out


@SETTINGS
@given(
    m=markets(max_days=1.5),
    plan=st.lists(
        st.tuples(
            st.sampled_from(["live", "down"]),
            st.integers(1, 20_000),
            st.sampled_from([1, 7, 100, 1000, 5000]),
        ),
        min_size=1,
        max_size=8,
    ),
)
@example(m=BACKFILLED, plan=[("live", 3000, 100), ("down", 9000, 7), ("live", 50, 5000)])
def test_the_live_loop_gives_the_alerts_of_in_order_feeding_whatever_the_batches(
    m: Market, plan: list[tuple[str, int, int]]
) -> None:
    make = maker(Path("/tmp/stressbot-property-rules"))
    ticks = expand(m)
    e = make()
    want: list[Alert] = []
    for t, s, v in ticks:
        e.add(t, s, v)
        want += e.take_alerts()
    got = run_live(make, ticks, plan)
    assert wire(got) == wire(want)
