"""bot.core.pacing: minimum spacing (aiolimiter), pauses and a parent pacer."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.core.pacing import KeyedPacer, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def starts(pacer: Pacer, n: int) -> list[float]:
    out = []
    for _ in range(n):
        await pacer.wait()
        out.append(time.monotonic())
    return out


def test_a_pause_holds_until_it_ends_and_a_shorter_one_does_not_cut_it() -> None:
    clock = FakeClock()
    p = Pacer(0, clock=clock)
    assert p.ready_in() == 0.0
    p.pause(5)
    p.pause(2)
    assert p.ready_in() == 5.0
    clock.now += 3
    assert p.ready_in() == 2.0
    clock.now += 2
    assert p.ready_in() == 0.0


def test_a_parent_pause_holds_its_children() -> None:
    clock = FakeClock()
    parent = Pacer(0, clock=clock)
    a, b = Pacer(0, parent, clock=clock), Pacer(0, parent, clock=clock)
    parent.pause(4)
    a.pause(1)
    assert a.ready_in() == 4.0 and b.ready_in() == 4.0
    clock.now += 4
    assert a.ready_in() == 0.0


async def test_requests_start_at_least_the_interval_apart() -> None:
    times = await starts(Pacer(0.05), 4)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.045


async def test_concurrent_waiters_are_spaced_too() -> None:
    p = Pacer(0.05)
    times: list[float] = []

    async def one() -> None:
        await p.wait()
        times.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(4)))
    times.sort()
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.045


async def test_ready_in_counts_the_spacing_after_a_start() -> None:
    p = Pacer(10.0)
    await p.wait()
    assert 9.0 < p.ready_in() <= 10.0


async def test_a_pause_delays_the_next_request() -> None:
    p = Pacer(0)
    await p.wait()
    p.pause(0.2)
    t0 = time.monotonic()
    await p.wait()
    assert time.monotonic() - t0 >= 0.19


async def test_a_pause_of_the_parent_delays_a_child() -> None:
    parent = Pacer(0)
    child = Pacer(0, parent)
    parent.pause(0.2)
    t0 = time.monotonic()
    await child.wait()
    assert time.monotonic() - t0 >= 0.19


async def test_the_parent_spaces_requests_of_different_children() -> None:
    parent = Pacer(0.05)
    a, b = Pacer(0, parent), Pacer(0, parent)
    times = [*(await starts(a, 1)), *(await starts(b, 1)), *(await starts(a, 1))]
    assert min(y - x for x, y in itertools.pairwise(times)) >= 0.045


async def test_keyed_pacer_spaces_each_host_on_its_own() -> None:
    kp = KeyedPacer(0.0, {"slow.example": 0.1})
    assert kp.interval("slow.example") == 0.1 and kp.interval("fast.example") == 0.0
    await kp.wait("slow.example")
    await kp.wait("fast.example")
    assert kp.pacer("slow.example").ready_in() > 0.05  # spaced
    assert kp.pacer("fast.example").ready_in() == 0.0  # not held by the other host
    t0 = time.monotonic()
    await kp.wait("slow.example")
    assert time.monotonic() - t0 >= 0.05


async def test_keyed_pacer_defer_holds_one_host() -> None:
    kp = KeyedPacer(0.0)
    kp.defer("a.example", 0.2)
    assert kp.pacer("a.example").ready_in() == pytest.approx(0.2, abs=0.05)
    assert kp.pacer("b.example").ready_in() == 0.0
    t0 = time.monotonic()
    await kp.wait("a.example")
    assert time.monotonic() - t0 >= 0.19
