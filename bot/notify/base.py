"""What every destination shares: outcomes of a send, routing, stopping, reports, redaction.

Pacing and backoff are :mod:`bot.core.pacing` and :mod:`bot.core.retry`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.core.errors import StressbotError
from bot.core.models import Alert, AlertKind
from bot.core.pacing import Pacer
from bot.core.retry import sleep_or_stop
from bot.notify.config import Route
from bot.notify.heartbeat import is_heartbeat


class DeliveryError(StressbotError):
    """A destination did not accept a message. Subclasses say what to do about it."""


class RateLimited(DeliveryError):
    """HTTP 429: wait `retry_after` seconds, then repeat the same request."""

    def __init__(self, retry_after: float, detail: str, *, global_: bool = False) -> None:
        self.retry_after = retry_after
        self.global_ = global_
        super().__init__(f"rate limited for {retry_after:g}s: {detail}")


class TransientError(DeliveryError):
    """A 5xx answer, a timeout or a network error: retry with backoff.

    `maybe_sent` says whether the destination may have posted the message all the same: true
    (the default) for an error answer, a connection lost after the request went out, or an
    answer slower than the client timeout; false when the request provably never reached the
    destination (the connection could not be made). A resend after a failure that may have
    been sent carries a note saying it may repeat an earlier message.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


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
    A connection that could not be made (``aiohttp.ClientConnectorError``, which covers a
    refused connection and a failed DNS lookup, or ``ConnectionTimeoutError``) is known not to
    have delivered anything; any other failure may have happened after the destination took
    the request (``maybe_sent``).
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
    except aiohttp.ConnectionTimeoutError:
        raise TransientError(
            f"{what}: no connection within the timeout", maybe_sent=False
        ) from None
    except TimeoutError as e:
        raise TransientError(f"{what}: no answer within the timeout") from e
    except aiohttp.ClientConnectorError as e:
        raise TransientError(
            f"{what}: network error {type(e).__name__}", maybe_sent=False
        ) from None
    except aiohttp.ClientError as e:
        raise TransientError(f"{what}: network error {type(e).__name__}") from None


class PermanentError(DeliveryError):
    """The destination refuses this message (4xx): it is parked instead of retried.

    `destination` marks a refusal of the destination as a whole (the bot was removed from the
    chat, the token or the webhook is no longer valid): such alerts are redelivered once the
    destination accepts messages again. Otherwise the refusal is about this message and the
    alert waits for ``stressbot deadletters retry``.
    """

    def __init__(self, message: str, *, destination: bool = False) -> None:
        super().__init__(message)
        self.destination = destination


class FormattingRejected(DeliveryError):
    """The platform could not parse the formatting: send it again as plain text."""


class AttachmentRejected(DeliveryError):
    """The platform refused the chart image: send the text without it."""


class DrainDeadline(DeliveryError):
    """A bounded drain ran out of time while waiting; the alert stays pending."""


class Stopped(DeliveryError):
    """The service is stopping; the alert in hand stays pending."""


class LeaseLost(DeliveryError):
    """Another process delivers to this destination now; the alert in hand stays pending."""


class TakenOver(DeliveryError):
    """Another process delivered (or parked) the alert in hand meanwhile."""


def accepts(route: Route, alert: Alert) -> bool:
    """Whether `route` wants `alert` (severity, pattern, rule, resolved messages); the
    heartbeat goes to the routes that ask for it, whatever their filters."""
    if is_heartbeat(alert):
        return route.heartbeat
    if alert.kind is AlertKind.RESOLVED and not route.resolved:
        return False
    if alert.severity.lower() not in route.severities:
        return False
    if route.patterns and alert.pattern not in route.patterns:
        return False
    return not (route.rules and alert.rule not in route.rules)


def entry_time(entry_id: str) -> float:
    """The wall-clock time Redis assigned to an outbox entry id ("ms-seq")."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000.0
    except ValueError:
        return time.time()


@dataclass(slots=True)
class _Stop:
    event: asyncio.Event | None
    deadline: float | None  # monotonic

    def check(self, wait: float = 0.0) -> None:
        if self.event is not None and self.event.is_set():
            raise Stopped("stopping")
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise DrainDeadline(f"would wait {wait:.1f}s past the drain deadline")

    async def wait(self, aw: Awaitable[None]) -> None:
        """Await `aw` (a pacer's wait), but no longer than the deadline or the stop event."""
        self.check()
        task: asyncio.Future[None] = asyncio.ensure_future(aw)
        waiters: set[asyncio.Future[Any]] = {task}
        if self.event is not None:
            waiters.add(asyncio.ensure_future(self.event.wait()))
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for t in waiters:
                t.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if task in done and not task.cancelled():
            task.result()
            return
        self.check()
        raise DrainDeadline("a pacing wait reached the drain deadline")

    async def sleep(self, seconds: float) -> None:
        self.check(seconds)
        if self.event is None:
            await asyncio.sleep(seconds)
            return
        await sleep_or_stop(self.event, seconds)
        self.check()


@dataclass(slots=True)
class Part:
    """One message to send. `plain` is the same content without formatting."""

    text: str  # formatted (Telegram HTML) or the JSON payload's content for Discord
    plain: str
    photo: bytes | None = None
    embed: dict[str, object] | None = None  # Discord only

    def without_photo(self) -> Part:
        """The same message without its chart (and a Discord embed without its image)."""
        embed = dict(self.embed) if self.embed is not None else None
        if embed is not None:
            embed.pop("image", None)
        return Part(self.text, self.plain, photo=None, embed=embed)


class Sender(Protocol):
    """A platform client bound to one destination, with its pacers (`gate` for the
    destination, whose parent paces the whole platform; `global_gate` for platform-wide
    pauses such as Discord's global 429)."""

    name: str

    @property
    def gate(self) -> Pacer: ...

    @property
    def global_gate(self) -> Pacer: ...

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
    parked: int = 0  # set aside after the retry horizon or a refusal (kept in the ledger)
    parked_dropped: int = 0  # oldest parked alerts dropped to keep delivery.max_parked
    redelivered: int = 0  # parked alerts delivered later (recovery, probe or operator)
    deferred: int = 0  # still pending when a bounded drain stopped
    rate_limited: int = 0
    retries: int = 0
    may_repeat: int = 0  # messages resent after an attempt whose outcome was unknown
    reclaimed: int = 0  # pending entries taken over from a consumer that is gone
    fallbacks: int = 0  # plain text or no-image fallbacks
    latencies: list[float] = field(default_factory=list)  # outbox write -> accepted, seconds

    @property
    def dead(self) -> int:
        """Alerts parked (the name dead letters had before they could be redelivered)."""
        return self.parked


@dataclass(slots=True)
class DeliveryReport:
    destinations: dict[str, DestinationReport] = field(default_factory=dict)
    # configured destinations that could not be used (missing secret), with the reason;
    # their alerts stay in the outbox (for notify.storage.outbox_retention: bot.notify.retention)
    unavailable: dict[str, str] = field(default_factory=dict)

    def total(self, attr: str) -> int:
        return sum(int(getattr(r, attr)) for r in self.destinations.values())

    @property
    def complete(self) -> bool:
        """True when nothing was left undelivered in the outbox (parked alerts are kept in the
        ledger, and counted apart)."""
        return self.total("deferred") == 0 and not self.unavailable

    def summary(self) -> str:
        parts = []
        for name, r in self.destinations.items():
            parts.append(
                f"{name}: {r.delivered} delivered, {r.skipped} not routed, {r.muted} muted, "
                f"{r.already_delivered} already delivered, {r.parked} parked, "
                f"{r.redelivered} redelivered, {r.deferred} left pending"
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
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        # fields given with extra={...} (the JSON log lines show them): a value whose text
        # holds a secret is replaced by the redacted text
        for k, v in list(vars(record).items()):
            if k in _RECORD_ATTRS or v is None or isinstance(v, bool | int | float):
                continue
            text = v if isinstance(v, str) else str(v)
            red = self.redact(text)
            if red != text:
                setattr(record, k, red)
        return True


#: What every LogRecord carries; any other attribute came from ``extra``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


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
