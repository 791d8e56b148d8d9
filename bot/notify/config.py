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
from typing import Any, Literal, Protocol, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bot.core.config_types import DisplayConfig, Duration, OptZone
from bot.core.errors import ConfigError

SeverityName = Literal["info", "warning", "critical"]
ALL_SEVERITIES: tuple[SeverityName, ...] = ("info", "warning", "critical")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What a config error shows instead of a webhook URL (which holds the webhook's secret token).
HIDDEN_URL = "<not shown: a webhook URL holds its secret>"


def _hide_urls(value: Any) -> Any:
    """`value` with every ``url`` entry replaced by :data:`HIDDEN_URL`."""
    if isinstance(value, dict):
        return {
            k: HIDDEN_URL if k == "url" and v is not None else _hide_urls(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hide_urls(v) for v in value]
    return value


def _without_urls(e: ValidationError, title: str) -> ValidationError:
    """The same errors, each showing its input with the webhook URLs hidden.

    A config error names the key and what it got (``format_validation_error`` appends each
    error's input), and the input of a webhook's own check is the whole webhook table: its
    literal ``url`` would be printed in full. pydantic reports the input a validator was given,
    not a copy it may have redacted, so the errors are rebuilt here with the input hidden
    (``ValidationError.from_exception_data`` with ``InitErrorDetails``; the message goes in as a
    ``PydanticCustomError`` context value so braces in it are not read as placeholders, and the
    error type is kept, so "unknown key" and "missing" still read as before).
    """
    details: list[InitErrorDetails] = []
    for err in e.errors():
        loc = tuple(err["loc"])
        shown = HIDDEN_URL if loc and loc[-1] == "url" else _hide_urls(err.get("input"))
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(err["type"], "{msg}", {"msg": err["msg"]}),
                loc=loc,
                input=shown,
            )
        )
    return ValidationError.from_exception_data(title, details)


class Route(_Strict):
    """What one destination wants to receive."""

    name: str = Field(description="unique destination name; also names its Redis consumer group")
    severities: list[SeverityName] = Field(default_factory=lambda: list(ALL_SEVERITIES))
    patterns: list[str] = Field(default_factory=list, description="empty: every pattern")
    rules: list[str] = Field(default_factory=list, description="empty: every rule")
    resolved: bool = Field(default=True, description="also send 'resolved' messages")
    timezone: OptZone = Field(default=None, description="default: [display].timezone")
    charts: bool = True
    heartbeat: bool = Field(
        default=False, description="also receive the deadman heartbeat ([notify.heartbeat])"
    )
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
    # A chat is read by people: "resolved" messages are opt-in there (issue 12), as
    # Alertmanager's send_resolved is per receiver. Discord webhooks keep them by default.
    resolved: bool = Field(default=False, description="also send 'resolved' messages")
    topic_id: int | None = Field(default=None, description="forum topic (message_thread_id)")


class DiscordWebhook(Route):
    url_env: str | None = Field(default=None, description="env variable holding the webhook URL")
    url: str | None = Field(default=None, description="literal URL: loopback test servers only")
    thread_id: int | None = Field(default=None, description="post into this thread")
    username: str | None = None
    # The longest single wait a rate limit (429, or an empty bucket) may impose on this
    # webhook. A longer one is cut to this; the alert stays pending and is tried again then
    # (Discord answers another 429 with the time left if it is still limited). Never dropped.
    max_wait: Duration = Field(default=300.0, gt=0)

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

    # Defined last: the last validator of a model runs outermost, so this sees every error.
    @model_validator(mode="wrap")
    @classmethod
    def _errors_hide_the_url(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as e:
            raise _without_urls(e, cls.__name__) from None

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
    # per group, supergroup or channel (negative chat ids, @usernames): 20 a minute
    group_min_interval: Duration = 3.0
    global_min_interval: Duration = 1.0 / 30  # whole bot: about 30 msgs/s
    poll_timeout: Duration = 30.0  # getUpdates long-poll

    def token(self) -> str | None:
        v = os.environ.get(self.token_env)
        return v if v else None


class DiscordConfig(_Strict):
    webhooks: list[DiscordWebhook] = Field(default_factory=list)
    # Per webhook: at most 30 messages a minute (Discord's per-channel webhook limit, on top of
    # the 5-per-2-s bucket the X-RateLimit-* headers show: discord-api-docs issue #367).
    min_interval: Duration = 2.0
    global_min_interval: Duration = 0.02  # all webhooks together: Discord's 50 requests/s


class DeliveryConfig(_Strict):
    request_timeout: Duration = 15.0
    # 429s, 5xx answers and network errors are retried (capped exponential backoff with
    # jitter) while the destination's current run of failures is younger than this; then the
    # alert is parked, and redelivered when the destination accepts messages again.
    retry_horizon: Duration = 6 * 3600.0
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        description="park an alert after this many failed tries (None: only the horizon counts)",
    )
    backoff_base: Duration = 1.0
    backoff_max: Duration = 60.0
    # While alerts are parked, the oldest is tried again at growing intervals up to this.
    probe_interval: Duration = 600.0
    # Parked alerts kept per destination; parking one more drops the oldest (outbox order):
    # marked dropped, logged, written with its alert to the notify:dead log, counted.
    max_parked: int = Field(default=1000, ge=1)
    # A notifier process delivers to a destination while it holds the destination's lease;
    # the lease of a process that died runs out after this, and another one takes over.
    lease_ttl: Duration = Field(default=15.0, gt=0)
    chart_timeout: Duration = 20.0
    # The live service acknowledges without sending alerts older than this (0: never), so a
    # destination added later is not flooded with history. Replay delivery ignores it.
    stale_after: Duration = 0.0
    # deliver_pending() gives up waiting (rate limits, backoff) after this long; what is left
    # stays pending in the outbox for the next run (never dropped).
    drain_timeout: Duration = 300.0


class HeartbeatConfig(_Strict):
    """The deadman heartbeat (:mod:`bot.notify.heartbeat`)."""

    # How often the live engine writes a heartbeat (into the outbox when a destination asks
    # for it, and always into its status record for /metrics). 0: never.
    interval: Duration = Field(default=300.0, ge=0)


class StorageConfig(_Strict):
    """Bounded storage (:mod:`bot.notify.retention`)."""

    # An outbox entry every destination acknowledged is removed once it is older than this.
    outbox_retention: Duration = Field(default=30 * 86400.0, gt=0)
    # A final delivery mark (sent, dropped) is removed once it is older than this; it must
    # outlast the outbox retention, so an entry still in the outbox keeps its mark.
    mark_ttl: Duration = Field(default=90 * 86400.0, gt=0)
    sweep_every: Duration = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _marks_outlast_entries(self) -> StorageConfig:
        if self.mark_ttl < self.outbox_retention:
            raise ValueError(
                "notify.storage.mark_ttl must be at least outbox_retention (an alert still in "
                "the outbox must keep the mark that says it was delivered)"
            )
        return self


class NotifyConfig(_Strict):
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    storage: StorageConfig = StorageConfig()

    def routes(self) -> list[Route]:
        """Every destination, Telegram chats first."""
        return [*self.telegram.chats, *self.discord.webhooks]

    @property
    def destination_names(self) -> list[str]:
        """Every configured destination: the Telegram chats, then the Discord webhooks."""
        return [r.name for r in self.routes()]

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = self.destination_names
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"destination names must be unique, repeated: {', '.join(dup)}")
        return self

    # Defined last: the last validator of a model runs outermost, so this sees every error.
    @model_validator(mode="wrap")
    @classmethod
    def _errors_hide_urls(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as e:
            raise _without_urls(e, cls.__name__) from None


class NotifySettings(Protocol):
    """What the notifiers read of the whole configuration (the root `Config` provides it)."""

    @property
    def notify(self) -> NotifyConfig: ...

    @property
    def display(self) -> DisplayConfig: ...
