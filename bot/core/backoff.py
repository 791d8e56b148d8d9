"""Capped exponential backoff with jitter, reset after a healthy period."""

from __future__ import annotations

import random
from collections.abc import Callable

from connectors.config import BackoffConfig


class Backoff:
    def __init__(self, config: BackoffConfig, rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        """The delay before the next attempt: initial * multiplier**n, capped, jittered down."""
        c = self.config
        base = min(c.max, c.initial * c.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return base * (1.0 - c.jitter * self._rng())

    def reset(self) -> None:
        self.attempt = 0
