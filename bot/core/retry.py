"""The one retry/backoff implementation: capped exponential backoff with jitter, on tenacity.

Two shapes of the same policy (:class:`BackoffPolicy`):

* :class:`Backoff`: ``next_delay()`` / ``reset()`` for the long-running loops that decide
  for themselves when to try again (feed reconnects and polls, the tick writer, the notifier's
  delivery loop). They sleep on their own stop event (:func:`sleep_or_stop`), report the
  delay in feed health, and reset after a healthy period, which a retry *call* cannot
  express.
* :func:`retry_async`: a bounded retry of one awaitable (the history downloader): it gives up
  after ``attempts`` tries, or at once when a server's Retry-After is longer than
  ``max_retry_after``, raising :class:`RetriesExhausted` / :class:`RetryAfterTooLong` with the
  last error as ``__cause__``.

The delay before the n-th retry (n = 1 after the first failure) is
``initial * multiplier**(n-1)``, capped at ``max``, then shortened by a random fraction of up
to ``jitter`` of itself (never lengthened): ``jitter=0.5`` spreads delays over [d/2, d].
When the failure carried a Retry-After (seconds), that is a floor: the delay is at least the
Retry-After plus a little spread (up to ``min(1 s, initial)``, none when ``jitter`` is 0) so
that clients told the same instant do not all come back at once.

What this relies on from tenacity (>= 9; read against 9.2):

* ``tenacity.wait.wait_exponential(multiplier, max, exp_base)`` computes the capped ceiling
  ``multiplier * exp_base**(attempt_number - 1)``, clamped to ``max`` (and guarded against
  float overflow for large attempt numbers). Our ``initial`` is its ``multiplier``, our
  ``multiplier`` its ``exp_base``. Tenacity's own jittered waits are not used because their
  jitter has other semantics than ``[feeds.backoff] jitter`` ("fraction of the delay
  randomised, never longer"): ``wait_random_exponential`` is full jitter, uniform in
  [0, ceiling], and ``wait_exponential_jitter`` *adds* up to ``jitter`` seconds. So
  :class:`wait_jittered` (a ``wait_base`` subclass, the documented extension point) scales the
  ceiling by ``1 - jitter * rng()``.
* A wait strategy is a callable of a ``RetryCallState`` and only reads ``attempt_number``
  and ``outcome``; :meth:`BackoffPolicy.delay` builds such a state to evaluate the same
  strategy for the stateful :class:`Backoff`.
* ``AsyncRetrying(sleep=, stop=, wait=, retry=, before_sleep=, retry_error_callback=)`` called
  with a coroutine function: ``retry_if_exception(predicate)`` decides what is retried (a
  failure it rejects is re-raised unchanged); ``stop_after_attempt(n)`` counts the first
  try; stop strategies combine with ``|``; the wait is computed before the stop check and is
  ``retry_state.upcoming_sleep`` in ``before_sleep``; when the stop fires,
  ``retry_error_callback`` is called instead of raising ``RetryError`` (ours raises our own
  error); ``sleep`` is any awaitable-returning callable, so a caller can also hold a pacer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_after_attempt, stop_base, stop_never
from tenacity.wait import wait_base, wait_exponential

from bot.core.errors import StressbotError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A uniform random number in [0, 1); injectable so tests can pin the jitter.
Rng = Callable[[], float]
#: The Retry-After (seconds) an error carried, or None.
RetryAfterOf = Callable[[BaseException], float | None]


class BackoffSettings(Protocol):
    """What a user-facing backoff config provides (e.g. ``connectors.config.BackoffConfig``)."""

    @property
    def initial(self) -> float: ...

    @property
    def max(self) -> float: ...

    @property
    def multiplier(self) -> float: ...

    @property
    def jitter(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Capped exponential backoff with jitter; optionally bounded (for :func:`retry_async`).

    `attempts` counts the first try (None: retry forever). A Retry-After longer than
    `max_retry_after` is not waited for: :func:`retry_async` gives up at once.
    """

    initial: float = 1.0
    max: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    attempts: int | None = None
    max_retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < 0:
            raise ValueError("backoff initial and max must not be negative")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be 1 or more")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("attempts must be 1 or more (it counts the first try)")
        if self.max_retry_after is not None and self.max_retry_after < 0:
            raise ValueError("max_retry_after must not be negative")

    @classmethod
    def of(
        cls,
        settings: BackoffSettings,
        *,
        attempts: int | None = None,
        max_retry_after: float | None = None,
    ) -> BackoffPolicy:
        """The policy of a config object with initial / max / multiplier / jitter."""
        return cls(
            initial=float(settings.initial),
            max=float(settings.max),
            multiplier=float(settings.multiplier),
            jitter=float(settings.jitter),
            attempts=attempts,
            max_retry_after=max_retry_after,
        )

    def wait(self, rng: Rng = random.random) -> wait_base:
        """The tenacity wait strategy of this policy (no Retry-After)."""
        ceiling = wait_exponential(multiplier=self.initial, max=self.max, exp_base=self.multiplier)
        return wait_jittered(ceiling, self.jitter, rng)

    def retry_wait(self, retry_after: RetryAfterOf, rng: Rng = random.random) -> wait_base:
        """The wait strategy that also honours the Retry-After the failure carried."""
        return wait_retry_after(self.wait(rng), retry_after, self.retry_after_spread, rng)

    @property
    def retry_after_spread(self) -> float:
        """Up to this many seconds are added to a Retry-After (0 when jitter is 0)."""
        return min(1.0, self.initial) if self.jitter > 0 else 0.0

    def delay(
        self, retry: int, retry_after: float | None = None, rng: Rng = random.random
    ) -> float:
        """Seconds to wait before the `retry`-th retry (1: after the first failure)."""
        state = RetryCallState(retry_object=_NOT_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, retry)
        return at_least_retry_after(
            self.wait(rng)(state), retry_after, self.retry_after_spread, rng
        )


_NOT_RETRYING = AsyncRetrying()  # owner of the call states built by BackoffPolicy.delay


class wait_jittered(wait_base):  # lower case, as tenacity names its wait strategies
    """`ceiling` shortened by a random fraction of up to `jitter` of itself."""

    def __init__(self, ceiling: wait_base, jitter: float, rng: Rng = random.random) -> None:
        self.ceiling = ceiling
        self.jitter = jitter
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        d = float(self.ceiling(retry_state))
        return d * (1.0 - self.jitter * self.rng()) if self.jitter else d


class wait_retry_after(wait_base):
    """`backoff`, but at least the failure's Retry-After (plus up to `spread` seconds)."""

    def __init__(
        self, backoff: wait_base, retry_after: RetryAfterOf, spread: float, rng: Rng
    ) -> None:
        self.backoff = backoff
        self.retry_after = retry_after
        self.spread = spread
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = _failure(retry_state)
        ra = self.retry_after(exc) if exc is not None else None
        return at_least_retry_after(self.backoff(retry_state), ra, self.spread, self.rng)


def at_least_retry_after(
    delay: float, retry_after: float | None, spread: float, rng: Rng = random.random
) -> float:
    """`delay`, raised to `retry_after` plus a random part of `spread` when there is one."""
    if retry_after is None:
        return delay
    return max(delay, max(0.0, retry_after) + spread * rng())


def retry_after_of(exc: BaseException) -> float | None:
    """The ``retry_after`` attribute (seconds) of an error, if it has a number there."""
    ra = getattr(exc, "retry_after", None)
    return float(ra) if isinstance(ra, int | float) and not isinstance(ra, bool) else None


class Backoff:
    """The policy's delays one after another, for loops that sleep on their own; ``reset()``
    after a success (or a healthy period) starts again from ``initial``."""

    def __init__(self, policy: BackoffPolicy, rng: Rng = random.random) -> None:
        self.policy = policy
        self.attempt = 0
        self._rng = rng

    def next_delay(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt; at least `retry_after` when the server gave one."""
        self.attempt += 1
        return self.policy.delay(self.attempt, retry_after, self._rng)

    def reset(self) -> None:
        self.attempt = 0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when `stop` is set meanwhile; True when it is set (the loops'
    wait before their next attempt).

    ``asyncio.timeout`` around ``stop.wait()``: the one future ``Event.wait`` makes and a
    timer handle, where ``asyncio.wait_for(stop.wait(), seconds)`` wraps the wait in a task
    (``ensure_future``) and cancels it at every timeout. A cancellation of the caller is
    passed on, never taken for the timeout (``asyncio.timeout`` tells them apart, which
    ``wait_for`` on 3.11 does not always do: cpython gh-86296)."""
    if stop.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
    return stop.is_set()


class GaveUp(StressbotError):
    """:func:`retry_async` stopped retrying; `last` is the last failure (also ``__cause__``)."""

    def __init__(self, message: str, last: BaseException) -> None:
        super().__init__(message)
        self.last = last


class RetriesExhausted(GaveUp):
    """Every one of `attempts` tries failed."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: still failing after {attempts} attempts ({last})", last)
        self.attempts = attempts


class RetryAfterTooLong(GaveUp):
    """The server asked to come back later than the policy's `max_retry_after`."""

    def __init__(self, what: str, retry_after: float, limit: float, last: BaseException) -> None:
        super().__init__(
            f"{what}: asked to retry after {retry_after:.0f} s (more than {limit:.0f} s)", last
        )
        self.retry_after = retry_after
        self.limit = limit


class _stop_on_long_retry_after(stop_base):
    def __init__(self, retry_after: RetryAfterOf, limit: float) -> None:
        self.retry_after = retry_after
        self.limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = _failure(retry_state)
        ra = self.retry_after(exc) if exc is not None else None
        return ra is not None and ra > self.limit


def _failure(retry_state: RetryCallState) -> BaseException | None:
    out = retry_state.outcome
    return out.exception() if out is not None and out.failed else None


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: BackoffPolicy,
    retryable: Callable[[BaseException], bool],
    retry_after: RetryAfterOf = retry_after_of,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    what: str = "request",
    rng: Rng = random.random,
) -> T:
    """Await `attempt()` until it succeeds, retrying the failures `retryable` accepts.

    A failure that is not retryable (or not an ``Exception``, e.g. a cancellation) is raised
    unchanged. `on_retry(error, retry_number, delay)` is called before each sleep (progress
    output); the same is logged at INFO. `sleep` defaults to ``asyncio.sleep``.

    Raises :class:`RetryAfterTooLong` when a failure's Retry-After exceeds
    ``policy.max_retry_after``, :class:`RetriesExhausted` after ``policy.attempts`` tries.
    """

    def should_retry(e: BaseException) -> bool:
        return isinstance(e, Exception) and retryable(e)

    stop: stop_base = stop_never
    if policy.attempts is not None:
        stop = stop_after_attempt(policy.attempts)
    if policy.max_retry_after is not None:
        stop = stop | _stop_on_long_retry_after(retry_after, policy.max_retry_after)

    def before_sleep(rs: RetryCallState) -> None:
        exc = _failure(rs)
        assert exc is not None  # only failures are retried
        log.info("%s: %s; retry %d in %.1f s", what, exc, rs.attempt_number, rs.upcoming_sleep)
        if on_retry is not None:
            on_retry(exc, rs.attempt_number, rs.upcoming_sleep)

    def give_up(rs: RetryCallState) -> NoReturn:
        exc = _failure(rs)
        assert exc is not None
        ra = retry_after(exc)
        limit = policy.max_retry_after
        if limit is not None and ra is not None and ra > limit:
            raise RetryAfterTooLong(what, ra, limit, exc) from exc
        raise RetriesExhausted(what, rs.attempt_number, exc) from exc

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=policy.retry_wait(retry_after, rng),
        retry=retry_if_exception(should_retry),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
    result: T = await retrying(attempt)
    return result


__all__ = [
    "Backoff",
    "BackoffPolicy",
    "BackoffSettings",
    "GaveUp",
    "RetriesExhausted",
    "RetryAfterTooLong",
    "at_least_retry_after",
    "retry_after_of",
    "retry_async",
    "wait_jittered",
    "wait_retry_after",
]
