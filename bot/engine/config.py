"""The engine's config sections: evaluation and checkpoint timing, and the trading sessions."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field

from bot.core.config_types import Duration, Strict, Zone


class SessionConfig(Strict):
    """A trading session in its own local time: start and end are wall-clock times in `zone`."""

    zone: Zone
    start: time
    end: time


def default_sessions() -> dict[str, SessionConfig]:
    # Non-overlapping buckets that follow each centre's own DST (see README, "Sessions").
    return {
        "asia": SessionConfig(zone="Asia/Tokyo", start=time(9), end=time(16)),
        "europe": SessionConfig(zone="Europe/London", start=time(8), end=time(13)),
        "us": SessionConfig(zone="America/New_York", start=time(8), end=time(17)),
    }


class EngineConfig(Strict):
    rules_dir: Path | None = Field(default=None, description="default: the shipped rules/")
    checkpoint_every: Duration = 5.0  # wall-clock seconds between checkpoints
    max_lateness: Duration = 5.0  # live: how far behind the wall clock event time may lag
    tick_batch: int = Field(default=5000, ge=1)
    # Rules are evaluated at most this often in event time; ticks in between wait.
    evaluate_every: Duration = 1.0
    # A tick further than this from the previous one of its symbol is held until the next
    # tick confirms it (a single wild print must not raise a crash alert). 0 disables.
    wild_print_pct: float = Field(default=15.0, ge=0)
    # No tick of any symbol for this long (event time) is missing input, not a quiet market:
    # windows do not compare across it. Longer than any weekend or holiday closure of daily
    # data (at most 3.6 days in 2000-2021).
    gap_after: Duration = 5 * 86400.0
    # Feed health (live): a feed stale or down for less than this says nothing (a websocket
    # reconnect of a few seconds sends no "down" and "resolved")...
    feed_alert_after: Duration = 120.0
    # ...and feeds due within this of the first one are named in one message.
    feed_alert_group: Duration = 30.0
