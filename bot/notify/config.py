"""Configuration of alert destinations (the `[notify]` table).

Chat ids and webhook *names* live in the file; secrets do not. The Telegram bot token is read
from the environment variable named by ``notify.telegram.token_env`` (default
``STRESSBOT_TELEGRAM_TOKEN``). A Discord webhook URL contains its secret token, so a webhook
names the variable that holds its URL (``url_env``); a literal ``url`` is accepted only for
local test servers on loopback.
"""

from __future__ import annotations

import os
import re
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.core.config_types import DisplayConfig, Duration, OptZone
from bot.core.errors import ConfigError

SeverityName = Literal["info", "warning", "critical"]
ALL_SEVERITIES: tuple[SeverityName, ...] = ("info", "warning", "critical")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Strict):
    """What one destination wants to receive."""

    name: str = Field(description="unique destination name; also names its Redis consumer group")
    severities: list[SeverityName] = Field(default_factory=lambda: list(ALL_SEVERITIES))
    patterns: list[str] = Field(default_factory=list, description="empty: every pattern")
    rules: list[str] = Field(default_factory=list, description="empty: every rule")
    resolved: bool = Field(default=True, description="also send 'resolved' messages")
    timezone: OptZone = Field(default=None, description="default: [display].timezone")
    charts: bool = True
    min_interval: Duration | None = Field(
        default=None, description="seconds between two messages here (default per platform)"
    )

    @model_validator(mode="after")
    def _check_name(self) -> Route:
        if not _NAME.match(self.name):
            raise ValueError(
                f"destination name {self.name!r}: use 1-64 letters, digits, '_', '.', '-'"
            )
        return self


class TelegramChat(Route):
    chat_id: int | str = Field(description="numeric chat id, or '@channelusername'")
    topic_id: int | None = Field(default=None, description="forum topic (message_thread_id)")


class DiscordWebhook(Route):
    url_env: str | None = Field(default=None, description="env variable holding the webhook URL")
    url: str | None = Field(default=None, description="literal URL: loopback test servers only")
    thread_id: int | None = Field(default=None, description="post into this thread")
    username: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> DiscordWebhook:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                f"webhook {self.name!r}: set exactly one of url_env (the variable holding the "
                "secret URL) or url (loopback test servers only)"
            )
        if self.url is not None and not re.match(
            r"^https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", self.url
        ):
            raise ValueError(
                f"webhook {self.name!r}: a webhook URL contains its secret token; put it in an "
                "environment variable and name it with url_env"
            )
        return self

    def resolve_url(self) -> str:
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        v = os.environ.get(self.url_env)
        if not v:
            raise ConfigError(
                f"notify.discord.webhooks[{self.name}]: environment variable {self.url_env} "
                "(the webhook URL) is not set"
            )
        return v


class TelegramConfig(_Strict):
    token_env: str = "STRESSBOT_TELEGRAM_TOKEN"
    api_base: str = Field(default="https://api.telegram.org", description="Bot API server")
    chats: list[TelegramChat] = Field(default_factory=list)
    # Commands are accepted only from these Telegram user ids (separate from the chats above).
    allowed_users: list[int] = Field(default_factory=list)
    commands: bool = True
    min_interval: Duration = 1.0  # per chat; Telegram asks for <= 1 msg/s per chat
    global_min_interval: Duration = 1.0 / 30  # whole bot: about 30 msgs/s
    poll_timeout: Duration = 30.0  # getUpdates long-poll

    def token(self) -> str | None:
        v = os.environ.get(self.token_env)
        return v if v else None


class DiscordConfig(_Strict):
    webhooks: list[DiscordWebhook] = Field(default_factory=list)
    min_interval: Duration = 0.5  # per webhook; Discord allows about 5 per 2 s per webhook
    global_min_interval: Duration = 0.02  # all webhooks together: Discord's 50 requests/s


class DeliveryConfig(_Strict):
    request_timeout: Duration = 15.0
    max_attempts: int = Field(default=6, ge=1, description="5xx/network tries before dead letter")
    backoff_base: Duration = 1.0
    backoff_max: Duration = 60.0
    chart_timeout: Duration = 20.0
    # The live service acknowledges without sending alerts older than this (0: never), so a
    # destination added later is not flooded with history. Replay delivery ignores it.
    stale_after: Duration = 0.0
    # deliver_pending() gives up waiting (rate limits, backoff) after this long; what is left
    # stays pending in the outbox for the next run (never dropped).
    drain_timeout: Duration = 300.0


class NotifyConfig(_Strict):
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    delivery: DeliveryConfig = DeliveryConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [c.name for c in self.telegram.chats] + [w.name for w in self.discord.webhooks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"destination names must be unique, repeated: {', '.join(dup)}")
        return self


class NotifySettings(Protocol):
    """What the notifiers read of the whole configuration (the root `Config` provides it)."""

    @property
    def notify(self) -> NotifyConfig: ...

    @property
    def display(self) -> DisplayConfig: ...
