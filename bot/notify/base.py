"""What every destination shares: outcomes of a send, reports, secret redaction.

Pacing and backoff are :mod:`bot.core.pacing` and :mod:`bot.core.retry`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from bot.core.errors import StressbotError
from bot.core.models import Alert


class DeliveryError(StressbotError):
    """A destination did not accept a message. Subclasses say what to do about it."""


class RateLimited(DeliveryError):
    """HTTP 429: wait `retry_after` seconds, then repeat the same request."""

    def __init__(self, retry_after: float, detail: str, *, global_: bool = False) -> None:
        self.retry_after = retry_after
        self.global_ = global_
        super().__init__(f"rate limited for {retry_after:g}s: {detail}")


class TransientError(DeliveryError):
    """A 5xx answer, a timeout or a network error: retry with backoff."""


async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    what: str,
    client_timeout: aiohttp.ClientTimeout,
    json_body: bytes | None = None,
    form: aiohttp.FormData | None = None,
) -> tuple[int, bytes, Mapping[str, str]]:
    """POST a JSON body or a multipart form; (status, body, headers) of the answer.

    A timeout or a network error becomes a TransientError naming `what`, never the URL (it
    holds the bot token or the webhook secret), and without the client error chained to it.
    """
    try:
        if form is None:
            req = session.post(
                url,
                data=json_body,
                timeout=client_timeout,
                headers={"Content-Type": "application/json"},
            )
        else:
            req = session.post(url, data=form, timeout=client_timeout)
        async with req as resp:
            return resp.status, await resp.read(), resp.headers
    except TimeoutError as e:
        raise TransientError(f"{what}: no answer within the timeout") from e
    except aiohttp.ClientError as e:
        raise TransientError(f"{what}: network error {type(e).__name__}") from None


class PermanentError(DeliveryError):
    """The destination refuses this message for good (4xx): keep it as a dead letter."""


class FormattingRejected(DeliveryError):
    """The platform could not parse the formatting: send it again as plain text."""


class AttachmentRejected(DeliveryError):
    """The platform refused the chart image: send the text without it."""


class DrainDeadline(DeliveryError):
    """A bounded drain ran out of time while waiting; the alert stays pending."""


@dataclass(slots=True)
class Part:
    """One message to send. `plain` is the same content without formatting."""

    text: str  # formatted (Telegram HTML) or the JSON payload's content for Discord
    plain: str
    photo: bytes | None = None
    embed: dict[str, object] | None = None  # Discord only


class Sender(Protocol):
    """A platform client bound to one destination."""

    name: str

    def render(self, alert: Alert, chart: bytes | None, note: str | None) -> list[Part]: ...

    async def send(self, part: Part, *, plain: bool) -> str:
        """Send one part; return the platform's message id. Raises a DeliveryError."""
        ...


@dataclass(slots=True)
class DestinationReport:
    delivered: int = 0  # alerts fully accepted by the destination
    messages: int = 0  # platform messages sent (an alert may need more than one)
    skipped: int = 0  # not routed here (severity / pattern / rule / resolved)
    muted: int = 0
    stale: int = 0
    already_delivered: int = 0  # outbox entries whose alert id was delivered before
    dead: int = 0
    deferred: int = 0  # still pending when a bounded drain stopped
    rate_limited: int = 0
    retries: int = 0
    fallbacks: int = 0  # plain text or no-image fallbacks
    latencies: list[float] = field(default_factory=list)  # outbox write -> accepted, seconds


@dataclass(slots=True)
class DeliveryReport:
    destinations: dict[str, DestinationReport] = field(default_factory=dict)
    # configured destinations that could not be used (missing secret), with the reason;
    # their alerts stay in the outbox
    unavailable: dict[str, str] = field(default_factory=dict)

    def total(self, attr: str) -> int:
        return sum(int(getattr(r, attr)) for r in self.destinations.values())

    @property
    def complete(self) -> bool:
        """True when nothing was left undelivered in the outbox (dead letters are kept, and
        counted apart)."""
        return self.total("deferred") == 0 and not self.unavailable

    def summary(self) -> str:
        parts = []
        for name, r in self.destinations.items():
            parts.append(
                f"{name}: {r.delivered} delivered, {r.skipped} not routed, {r.muted} muted, "
                f"{r.already_delivered} already delivered, {r.dead} dead-lettered, "
                f"{r.deferred} left pending"
            )
        for name, why in self.unavailable.items():
            parts.append(f"{name}: NOT DELIVERED ({why})")
        return "; ".join(parts) if parts else "no destinations configured"


class RedactSecrets(logging.Filter):
    """Replaces secrets (bot token, webhook tokens) in log records before any handler sees them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken record must not break logging
            return True
        red = self.redact(msg)
        if red != msg:
            record.msg, record.args = red, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_NOISY = ("httpx", "httpcore", "telegram", "telegram.ext", "aiohttp", "aiohttp.client")


def install_redaction(secrets: Iterable[str]) -> RedactSecrets:
    """Redact `secrets` in every handler of the root logger and in the HTTP client loggers.

    httpx logs each request URL at INFO, and a Telegram URL contains the bot token, so httpx is
    also lowered to WARNING.
    """
    f = RedactSecrets(secrets)

    def has(filters: list[object]) -> bool:
        return any(isinstance(x, RedactSecrets) and x.secrets == f.secrets for x in filters)

    for h in logging.getLogger().handlers:
        if not has(list(h.filters)):
            h.addFilter(f)
    for name in _NOISY:
        lg = logging.getLogger(name)
        if not has(list(lg.filters)):
            lg.addFilter(f)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return f
