"""bot.core.retry (backoff and bounded retries on tenacity) and bot.core.retry_after."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.pacing import KeyedPacer
from bot.core.retry import (
    Backoff,
    BackoffPolicy,
    RetriesExhausted,
    RetryAfterTooLong,
    retry_after_of,
    retry_async,
    sleep_or_stop,
)
from bot.core.retry_after import parse_retry_after
from connectors.config import BackoffConfig
from connectors.history.common import DOWNLOAD_RETRY, SourceUnavailable, with_retries

# --------------------------------------------------------------------------- Backoff


def test_delays_grow_by_the_multiplier_up_to_the_cap() -> None:
    b = Backoff(BackoffPolicy(initial=0.5, max=5, multiplier=3, jitter=0.0))
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.5, 4.5, 5.0, 5.0]


def test_reset_starts_again_from_the_initial_delay() -> None:
    b = Backoff(BackoffPolicy(initial=1, max=60, jitter=0.0))
    for _ in range(4):
        b.next_delay()
    b.reset()
    assert b.next_delay() == 1.0


def test_many_failures_stay_at_the_cap_without_overflow() -> None:
    b = Backoff(BackoffPolicy(initial=1, max=30, jitter=0.0))
    assert [b.next_delay() for _ in range(2000)][-1] == 30.0


# --------------------------------------------------------------------------- sleep_or_stop


async def test_sleep_or_stop_sleeps_the_whole_delay_when_nobody_stops() -> None:
    t0 = time.monotonic()
    assert await sleep_or_stop(asyncio.Event(), 0.2) is False
    assert 0.19 <= time.monotonic() - t0 < 1.0


async def test_sleep_or_stop_returns_as_soon_as_stop_is_set() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    t0 = time.monotonic()
    assert await sleep_or_stop(stop, 30.0) is True
    assert time.monotonic() - t0 < 1.0
    assert await sleep_or_stop(stop, 30.0) is True  # already set: at once


async def test_sleep_or_stop_passes_a_cancellation_on() -> None:
    sleeper = asyncio.create_task(sleep_or_stop(asyncio.Event(), 30.0))
    await asyncio.sleep(0.01)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper


async def test_sleep_or_stop_starts_no_task_of_its_own() -> None:
    """asyncio.wait_for(stop.wait(), t) runs the wait as a task of its own (3.11)."""
    before = len(asyncio.all_tasks())
    sleeper = asyncio.create_task(sleep_or_stop(asyncio.Event(), 30.0))
    await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) == before + 1  # the sleeper alone
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)


@given(
    initial=st.floats(0.0, 100.0),
    cap=st.floats(0.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    retry=st.integers(1, 200),
    r=st.floats(0.0, 1.0, exclude_max=True),
)
def test_jittered_delay_is_within_jitter_of_the_capped_ceiling(
    initial: float, cap: float, multiplier: float, jitter: float, retry: int, r: float
) -> None:
    policy = BackoffPolicy(initial=initial, max=cap, multiplier=multiplier, jitter=jitter)
    ceiling = policy.delay(retry, rng=lambda: 0.0)
    d = policy.delay(retry, rng=lambda: r)
    assert ceiling <= cap
    assert ceiling * (1 - jitter) - 1e-9 <= d <= ceiling  # shortened, never lengthened


def test_jitter_spreads_the_delays() -> None:
    delays = [BackoffPolicy(initial=4, jitter=0.5).delay(1) for _ in range(50)]
    assert len(set(delays)) > 1
    assert all(2.0 <= d <= 4.0 for d in delays)


def test_a_retry_after_is_a_floor_with_a_small_spread() -> None:
    b = Backoff(BackoffPolicy(initial=0.05, max=0.2, jitter=0.5), rng=lambda: 1.0)
    assert b.next_delay(retry_after=3.0) == pytest.approx(3.05)  # + up to min(1, initial)
    long = Backoff(BackoffPolicy(initial=10, max=10, jitter=0.0))
    assert long.next_delay(retry_after=1.0) == 10.0  # the backoff is longer: kept


def test_policy_is_made_from_the_user_facing_config() -> None:
    cfg = BackoffConfig(initial=2, max=9, multiplier=3, jitter=0.25)
    assert BackoffPolicy.of(cfg, attempts=4) == BackoffPolicy(2, 9, 3, 0.25, attempts=4)


def test_an_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        BackoffPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=1.5)


# --------------------------------------------------------------------------- retry_async


class Flaky(Exception):
    def __init__(self, n: int, retry_after: float | None = None) -> None:
        super().__init__(f"failure {n}")
        self.retry_after = retry_after


class Script:
    """Fails with the scripted errors, then returns "ok"; records the (fake) sleeps."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.slept: list[float] = []
        self.progress: list[tuple[str, int, float]] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def on_retry(self, e: BaseException, n: int, delay: float) -> None:
        self.progress.append((str(e), n, delay))


FAST = BackoffPolicy(initial=1.0, max=4.0, jitter=0.0, attempts=4)


async def test_failures_are_retried_with_backoff_until_success() -> None:
    s = Script(Flaky(1), Flaky(2))
    result = await retry_async(
        s, policy=FAST, retryable=lambda e: True, sleep=s.sleep, on_retry=s.on_retry
    )
    assert result == "ok" and s.calls == 3
    assert s.slept == [1.0, 2.0]
    assert s.progress == [("failure 1", 1, 1.0), ("failure 2", 2, 2.0)]


async def test_bounded_retries_give_up_after_the_attempts_with_the_last_error() -> None:
    s = Script(*(Flaky(i) for i in range(10)))
    with pytest.raises(RetriesExhausted, match="after 4 attempts") as info:
        await retry_async(s, policy=FAST, retryable=lambda e: True, sleep=s.sleep, what="job")
    assert s.calls == 4 and len(s.slept) == 3
    assert info.value.attempts == 4
    assert isinstance(info.value.__cause__, Flaky) and str(info.value.last) == "failure 3"


async def test_an_error_that_is_not_retryable_is_raised_unchanged_at_once() -> None:
    s = Script(KeyError("nope"))
    with pytest.raises(KeyError):
        await retry_async(
            s, policy=FAST, retryable=lambda e: not isinstance(e, KeyError), sleep=s.sleep
        )
    assert s.calls == 1 and s.slept == []


async def test_the_retry_after_an_error_carries_is_waited_for() -> None:
    s = Script(Flaky(1, retry_after=30.0))
    await retry_async(s, policy=FAST, retryable=lambda e: True, sleep=s.sleep, rng=lambda: 0.0)
    assert s.slept == [30.0]


async def test_a_retry_after_above_the_maximum_is_not_waited_for() -> None:
    s = Script(Flaky(1, retry_after=3600.0))
    policy = BackoffPolicy(attempts=5, max_retry_after=300.0)
    with pytest.raises(RetryAfterTooLong, match="3600 s") as info:
        await retry_async(s, policy=policy, retryable=lambda e: True, sleep=s.sleep)
    assert s.calls == 1 and s.slept == []
    assert info.value.retry_after == 3600.0 and info.value.limit == 300.0


async def test_the_real_sleep_is_used_by_default() -> None:
    s = Script(Flaky(1))
    policy = BackoffPolicy(initial=0.2, max=0.2, jitter=0.0, attempts=2)
    t0 = time.monotonic()
    assert await retry_async(s, policy=policy, retryable=lambda e: True) == "ok"
    assert time.monotonic() - t0 >= 0.19


# --------------------------------------------------------------------------- Retry-After


NOW = datetime(2020, 3, 9, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), (" 120 ", 120.0), ("1.5", 1.5)])
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 09 Mar 2020 12:00:30 GMT",  # IMF-fixdate
        "Monday, 09-Mar-20 12:00:30 GMT",  # obsolete RFC 850
        "Mon Mar  9 12:00:30 2020",  # asctime
    ],
)
def test_retry_after_http_date_in_every_form(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 30.0


def test_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Mon, 09 Mar 2020 11:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "inf", "nan", "1e3", "7 seconds"])
def test_retry_after_garbage_is_no_hint(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


# --------------------------------------------------------------------- the downloader adapter


async def test_downloader_reports_a_long_retry_after_as_unavailable_without_waiting() -> None:
    s = Script(Flaky(1, retry_after=3600.0))
    with pytest.raises(SourceUnavailable, match=r"retry after 3600 s \(more than 300 s\)"):
        await with_retries(
            "FRED DGS10",
            s,
            host="fred.example",
            pacer=KeyedPacer(0.0),
            policy=DOWNLOAD_RETRY,
            classify=lambda e: (True, retry_after_of(e)),
            progress=lambda _m: None,
        )
    assert s.calls == 1


async def test_downloader_retries_report_progress_then_give_up_with_its_advice() -> None:
    s = Script(*(Flaky(i) for i in range(5)))
    said: list[str] = []
    with pytest.raises(SourceUnavailable, match=r"after 3 attempts .*raise --retries"):
        await with_retries(
            "FRED DGS10",
            s,
            host="fred.example",
            pacer=KeyedPacer(0.0),
            policy=BackoffPolicy(initial=0.01, max=0.01, attempts=3),
            classify=lambda e: (True, None),
            progress=said.append,
        )
    assert s.calls == 3
    assert [m.split(" in ")[0] for m in said] == [
        "  FRED DGS10: failure 0; retry 1",
        "  FRED DGS10: failure 1; retry 2",
    ]
