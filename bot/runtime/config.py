"""Configuration: a TOML file validated by pydantic, secrets and REDIS_URL from the environment.

Every error names the file, the key and what was expected, for example::

    config.toml: engine.checkpoint_every: expected a duration like '30s', '15m', '4h', '5d'
    or '1h30m', got 'soon'
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from bot.core.config_types import DisplayConfig, Strict, format_validation_error
from bot.core.errors import ConfigError
from bot.engine.config import EngineConfig, SessionConfig, default_sessions
from bot.notify.config import NotifyConfig
from bot.store.connection import RedisConfig, redis_url
from connectors.config import FeedsConfig


class MetricsConfig(Strict):
    """`/metrics`, `/healthz` and `/readyz` over HTTP while `stressbot run` runs."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="0.0.0.0 to scrape from other hosts")
    port: int = Field(default=9771, ge=0, le=65535)


class Config(Strict):
    redis: RedisConfig = RedisConfig()
    engine: EngineConfig = EngineConfig()
    display: DisplayConfig = DisplayConfig()
    sessions: dict[str, SessionConfig] = Field(default_factory=default_sessions)
    feeds: FeedsConfig = FeedsConfig()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()

    @field_validator("sessions")
    @classmethod
    def _session_names(cls, v: dict[str, SessionConfig]) -> dict[str, SessionConfig]:
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"session name {name!r} must be a plain word like 'asia'")
        return v

    @property
    def redis_url(self) -> str:
        return redis_url(self.redis.url)


def load_config(path: Path | str | None) -> Config:
    """Load and validate a config file; None gives the embedded defaults."""
    if path is None:
        return Config()
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"{p}: is a directory, not a config file (with Docker, create ./config.toml before "
            "starting: a missing file is mounted as an empty directory)"
        )
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
