"""Checkpoint pages on real Redis (`bot.engine.pages`, `bot.runtime.checkpoint`): a checkpoint
writes only the pages of series history that changed, yet what a restore reads is always the
series of one checkpoint, whatever commits were lost, refused or never made.

(property) Over long generated input, with checkpoints committed at random ticks, some lost
after they were acknowledged (a failover to a replica that had not received them), some never
made (the commit failed), the store emptied (Redis came back with no data) and restarts from
the store: the alerts and the final state are those of a run that never stopped.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bot.core.models import Alert, Tick
from bot.engine.engine import Engine
from bot.engine.pages import PAGE
from bot.runtime.checkpoint import commit_engine
from bot.runtime.live import EngineService
from bot.store.redis_store import Store
from tests.test_engine_properties import BACKFILLED, CONFIG, maker, rules, straight, wire
from tests.tick_gen import START, Market, Tick3, expand, markets

RULES = Path("/tmp/stressbot-property-rules")

Step = tuple[float, str]  # (fraction of the ticks, what happens there)
EVENTS = ["commit", "commit", "commit", "lost", "failed", "emptied", "restart"]


async def lose_next_commit(store: Store, engine: Engine) -> None:
    """A commit the store acknowledges and then forgets: what it held before comes back."""
    keys = [store.k_checkpoint, store.k_pages]
    saved = [await store.redis.dump(k) for k in keys]
    await commit_engine(store, engine, "p", "f", {}, [])
    for k, blob in zip(keys, saved, strict=True):
        await store.redis.delete(k)
        if blob is not None:
            await store.redis.restore(k, 0, blob)


async def run_with_events(
    store: Store, ticks: list[Tick3], steps: list[Step]
) -> tuple[list[Alert], Engine]:
    """The alerts of a run over `ticks` with the `steps` (fractions of the ticks) on the
    way, and the engine it ends with."""
    make = maker(RULES)
    points = sorted({(int(f * len(ticks)), what) for f, what in steps})
    e = make()
    out: list[Alert] = []
    k = 0
    for p, what in [*points, (len(ticks), "end")]:
        for t, s, v in ticks[k:p]:
            e.add(t, s, v)
            if e.pending:
                out += e.take_alerts()
        k = max(k, p)
        if what == "commit":
            await commit_engine(store, e, "p", "f", {}, [])
        elif what == "lost":
            await lose_next_commit(store, e)
        elif what == "failed":
            e.checkpoint()  # made, never committed: the engine must not count on it
        elif what == "emptied":
            await store.clear()
        elif what == "restart":  # a clean stop (last commit) and a start from the store
            await commit_engine(store, e, "p", "f", {}, [])
            cp = await store.load_checkpoint()
            assert cp is not None
            e = make()
            e.restore(cp.state, cp.pages)
    return out + e.finish(), e


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    m=markets(max_days=2.0),
    steps=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.sampled_from(EVENTS)), min_size=1, max_size=40
    ),
)
@example(
    m=BACKFILLED,
    steps=[(0.2, "commit"), (0.3, "lost"), (0.5, "commit"), (0.6, "restart"), (0.9, "restart")],
)
async def test_restarts_from_paged_checkpoints_give_the_output_of_a_run_that_never_stopped(
    store: Store, m: Market, steps: list[Step]
) -> None:
    await store.clear()
    ticks = expand(m)
    want, ref = straight(maker(RULES), ticks)
    got, e = await run_with_events(store, ticks, [*steps, (1.0, "restart")])
    assert wire(got) == wire(want)
    assert e.snapshot() == ref.snapshot()


def _feed(e: Engine, pages: float, every: float = 10.0) -> float:
    """BTC every `every` seconds for `pages` pages from START; returns the next tick's time."""
    t = START
    while t < START + pages * PAGE:
        e.add(t, "BTC/USD", 60_000.0 + (t % 600))
        t += every
    e.take_alerts()
    return t


def _page(t: float) -> str:
    return f"BTC/USD:{int(t // PAGE)}"


def test_a_checkpoint_writes_only_the_pages_from_the_newest_point_written_on() -> None:
    e = maker(RULES)()
    t = _feed(e, 2.5)
    _, first = e.checkpoint()
    e.checkpointed(first)
    e.add(t, "BTC/USD", 60_001.0)  # in the newest page
    _, second = e.checkpoint()
    e.checkpointed(second)
    e.add(t + PAGE, "BTC/USD", 60_002.0)  # in the next page
    _, third = e.checkpoint()
    assert first.base is None and len(first.put) == 3
    assert second.base == first.rev and list(second.put) == [_page(t)]
    assert third.base == second.rev and list(third.put) == [_page(t), _page(t + PAGE)]
    assert second.drop == third.drop == []


def test_a_checkpoint_after_an_uncommitted_one_writes_every_page() -> None:
    e = maker(RULES)()
    _feed(e, 2.5)
    _, first = e.checkpoint()
    e.checkpointed(first)
    e.checkpoint()  # its commit failed: what the store holds is not known for certain
    _, third = e.checkpoint()
    assert third.base is None
    assert third.put.keys() == first.put.keys()


def test_a_late_tick_rewrites_its_own_page_and_those_after_it() -> None:
    e = maker(RULES)()
    t = _feed(e, 3.5)
    _, first = e.checkpoint()
    e.checkpointed(first)
    e.add(t - 1.5 * PAGE + 5, "BTC/USD", 59_000.0)  # between two points, a page and a half ago
    _, second = e.checkpoint()
    assert list(second.put) == [_page(t - 1.5 * PAGE), _page(t)]  # the newest is the next


def test_a_rule_reload_keeps_writing_only_the_pages_that_changed() -> None:
    old = maker(RULES)()
    t = _feed(old, 2.5)
    _, first = old.checkpoint()
    old.checkpointed(first)
    new = maker(RULES)()
    new.restore(old.snapshot())
    new.adopt_pages(old)
    new.add(t, "BTC/USD", 60_001.0)
    _, second = new.checkpoint()
    assert second.base == first.rev
    assert list(second.put) == [_page(t)]


async def test_a_damaged_page_resumes_the_live_engine_without_series_history(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    e = maker(RULES)()
    t = _feed(e, 1.5)
    await commit_engine(store, e, "0-0", "f", {}, [])
    cp = await store.load_checkpoint()
    assert cp is not None and cp.pages is not None
    name = next(iter(cp.pages.put))
    await store.redis.hset(store.k_pages, name, b"[not json")
    await store.add_ticks([Tick(t, "BTC/USD", 61_000.0), Tick(t + 10, "BTC/USD", 61_010.0)])
    svc = EngineService(CONFIG, store, rules(RULES), clock=lambda: t + 10)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(svc.run(stop))
        async with asyncio.timeout(30):
            while not task.done():
                if svc.ticks_applied == 2:
                    break
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert f"pages are damaged (page {name!r} is not a page of points)" in caplog.text
    assert svc.engine.series["BTC/USD"].values == [61_000.0, 61_010.0]  # the feed fills it again
    cp = await store.load_checkpoint()
    assert cp is not None and cp.pages is not None
    assert list(cp.pages.put) == [_page(t)]  # its first commit wrote every page: the new one
