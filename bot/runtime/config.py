"""Configuration: a TOML file validated by pydantic, secrets and REDIS_URL from the environment.

Every error names the file, the key and what was expected, for example::

    config.toml: engine.checkpoint_every: expected a duration like '30s', '15m', '4h', '5d'
    or '1h30m', got 'soon'
"""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.core.config_types import Duration, Zone
from bot.core.errors import ConfigError
from bot.notify.config import NotifyConfig
from connectors.config import FeedsConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisConfig(Strict):
    url: str | None = Field(default=None, description="overridden by REDIS_URL when set")
    prefix: str = "stressbot"
    tick_maxlen: int = Field(default=200_000, ge=1000)


class SessionConfig(Strict):
    """A trading session in its own local time: start and end are wall-clock times in `zone`."""

    zone: Zone
    start: time
    end: time


def _default_sessions() -> dict[str, SessionConfig]:
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


class DisplayConfig(Strict):
    timezone: Zone = "UTC"  # the zone people see times in, besides UTC


class Config(Strict):
    redis: RedisConfig = RedisConfig()
    engine: EngineConfig = EngineConfig()
    display: DisplayConfig = DisplayConfig()
    sessions: dict[str, SessionConfig] = Field(default_factory=_default_sessions)
    feeds: FeedsConfig = FeedsConfig()
    notify: NotifyConfig = NotifyConfig()

    @field_validator("sessions")
    @classmethod
    def _session_names(cls, v: dict[str, SessionConfig]) -> dict[str, SessionConfig]:
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"session name {name!r} must be a plain word like 'asia'")
        return v

    @property
    def redis_url(self) -> str:
        from bot.store.connection import redis_url

        return redis_url(self.redis.url)


def load_config(path: Path | str | None) -> Config:
    """Load and validate a config file; None gives the embedded defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror or e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(p, e)) from e


def format_validation_error(path: Path | str, e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.toml)"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("missing",):
                msg += f" (got {err['input']!r})"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)
