"""Alerts to Discord webhooks: an embed coloured by severity, the chart as an attachment.

A webhook URL carries its secret token: it never appears in an error message or a log line.
Requests use ``?wait=true`` so Discord confirms the message was saved and returns its id.

API version. URLs as Discord shows them to users are unversioned
(``https://discord.com/api/webhooks/ID/TOKEN``), and an unversioned request goes to the
default version, still v6 (docs.discord.food "API Versioning": v6 is the API default and
deprecated), where ``retry_after`` came back in milliseconds (discord-api-docs issue #4722,
a webhook answering in ms while the docs say seconds). So every webhook is posted to
``/api/v10/webhooks/ID/TOKEN`` (:func:`versioned_webhook_url`; a pasted ``/api/vN/`` is
rewritten too, the query, ``thread_id`` included, is kept, ``wait=true`` is forced), and
rate-limit values are read in the unit v10 documents (Discord "Rate Limits" page, the source of
../shared/fixtures/discord): body ``retry_after`` "the number of seconds to wait" (a float,
e.g. 64.57), ``X-RateLimit-Reset-After`` seconds with a fraction ("1.234"; since v8 always
at millisecond precision, X-RateLimit-Precision gone), ``Retry-After`` whole seconds (since v8,
"now based in seconds instead of milliseconds"). The body's value is the precise one and is
used first (:func:`discord_retry_after`).

Caps and pace. A single wait is at most the webhook's ``max_wait`` (default 300 s): Discord
has answered 429s of hours and days ("retry-after: 2 days" made hikari cap its waits at 60 s,
hikari 2.0.0.dev90), and a ``shared`` 429 in the docs asks 1336.57 s. A longer wait is cut to
the cap; the alert stays pending in the outbox and is tried again then, never dropped. The
pace is ``notify.discord.min_interval`` per webhook, 2 s by default: Discord limits webhook
execution to 30 messages a minute per channel besides the 5-per-2-s bucket its headers show
(discord-api-docs issue #367, by a Discord engineer).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from bot.core.errors import ConfigError
from bot.core.models import Alert
from bot.core.pacing import Pacer
from bot.core.retry_after import parse_retry_after
from bot.notify.base import (
    AttachmentRejected,
    FormattingRejected,
    Part,
    PermanentError,
    RateLimited,
    TransientError,
    post,
)
from bot.notify.config import DiscordWebhook
from bot.notify.format import DC_CONTENT_LIMIT, discord_embed, discord_plain, trim

#: Mentions in alert text must never ping anyone.
NO_MENTIONS: dict[str, Any] = {"parse": []}

#: The API version every webhook request uses (rate-limit values are read in its units).
API_VERSION = 10

_WEBHOOK_PATH = re.compile(r"^(?P<base>.*?/api)(?:/v\d+)?/webhooks/(?P<id>\d+)/(?P<token>[^/]+)/?$")

log = logging.getLogger(__name__)


def versioned_webhook_url(url: str, thread_id: int | None = None) -> tuple[str, str]:
    """(the URL to post to, the webhook token): the path made ``/api/v10/webhooks/ID/TOKEN``,
    the query kept, ``wait=true`` forced, `thread_id` (if given) set. Raises ConfigError,
    without the URL, when it is not a webhook URL."""
    parts = urlsplit(url.strip())
    m = _WEBHOOK_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or m is None:
        raise ConfigError(
            "not a Discord webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN, "
            "as Discord shows it under Integrations > Webhooks > Copy Webhook URL)"
        )
    path = f"{m['base']}/v{API_VERSION}/webhooks/{m['id']}/{m['token']}"
    q = dict(parse_qsl(parts.query))
    q["wait"] = "true"
    if thread_id is not None:
        q["thread_id"] = str(thread_id)
    return urlunsplit(parts._replace(path=path, query=urlencode(q))), m["token"]


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def discord_retry_after(status_body: dict[str, Any], headers: Any) -> float:
    """Seconds a v10 429 asks to wait: body ``retry_after`` (seconds, fractional), else
    ``X-RateLimit-Reset-After`` (seconds, fractional), else ``Retry-After`` (seconds), else 5."""
    ra = status_body.get("retry_after")
    if isinstance(ra, int | float) and not isinstance(ra, bool) and 0 <= ra < float("inf"):
        return float(ra)
    after = _float(headers.get("X-RateLimit-Reset-After"))
    if after is not None and 0 <= after < float("inf"):
        return after
    h = parse_retry_after(headers.get("Retry-After"))
    return h if h is not None else 5.0


class DiscordDestination:
    """One webhook (optionally a thread of its channel)."""

    def __init__(
        self,
        hook: DiscordWebhook,
        session: aiohttp.ClientSession,
        zone: str,
        timeout: float,
        gate: Pacer,
        global_gate: Pacer,
    ) -> None:
        self.hook = hook
        self.name = hook.name
        self.session = session
        self.zone = hook.timezone or zone
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.gate = gate
        self.global_gate = global_gate
        self.max_wait = hook.max_wait
        try:
            self._url, self.secret = versioned_webhook_url(hook.resolve_url(), hook.thread_id)
        except ConfigError as e:
            raise ConfigError(f"notify.discord.webhooks[{hook.name}]: {e}") from None

    def render(self, alert: Alert, chart: bytes | None, note: str | None) -> list[Part]:
        embed = discord_embed(alert, self.zone, with_image=chart is not None, note=note)
        # The embed holds everything (its parts are trimmed to the embed limits). The plain
        # fallback is one message: the summary is shortened first so the numbers, times and
        # id still fit in 2000 characters.
        short = dataclasses.replace(alert, summary=trim(alert.summary, 800))
        plain = trim("\n".join(discord_plain(short, self.zone, note)), DC_CONTENT_LIMIT)
        return [Part(text="", plain=plain, photo=chart, embed=embed)]

    async def send(self, part: Part, *, plain: bool) -> str:
        payload: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if self.hook.username:
            payload["username"] = trim(self.hook.username, 80)
        if plain or part.embed is None:
            payload["content"] = trim(part.plain or part.text, DC_CONTENT_LIMIT)
        else:
            payload["embeds"] = [part.embed]
        photo = part.photo
        if plain and photo is not None:
            photo = None  # plain fallback: text only, the chart follows in its own part if any
        what = f"discord {self.name}"
        if photo is None:
            status, raw, headers = await post(
                self.session,
                self._url,
                what=what,
                client_timeout=self.timeout,
                json_body=orjson.dumps(payload),
            )
        else:
            payload["attachments"] = [{"id": 0, "filename": "chart.png"}]
            form = aiohttp.FormData()
            form.add_field(
                "payload_json", orjson.dumps(payload).decode(), content_type="application/json"
            )
            form.add_field("files[0]", photo, filename="chart.png", content_type="image/png")
            status, raw, headers = await post(
                self.session, self._url, what=what, client_timeout=self.timeout, form=form
            )
        self._observe_bucket(headers)
        try:
            body = orjson.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if 200 <= status < 300:
            return str(body.get("id", ""))
        msg = str(body.get("message", ""))[:300]
        if status == 429:
            is_global = bool(body.get("global")) or headers.get("X-RateLimit-Global") == "true"
            scope = headers.get("X-RateLimit-Scope", "global" if is_global else "user")
            asked = discord_retry_after(body, headers)
            wait = self._capped(asked, "429")
            note = "" if wait == asked else f"; asked {asked:g}s, capped at {wait:g}s"
            raise RateLimited(
                wait, f"discord {self.name}: {msg} (scope {scope}{note})", global_=is_global
            )
        if status >= 500:
            raise TransientError(f"discord {self.name}: HTTP {status} {msg}")
        if status == 400 and photo is not None and "attachment" in orjson.dumps(body).decode():
            raise AttachmentRejected(f"discord {self.name}: {msg}")
        if status == 400 and part.embed is not None and not plain:
            raise FormattingRejected(f"discord {self.name}: {msg} {_errors(body)}")
        if status in (401, 404):
            raise PermanentError(
                f"discord {self.name}: HTTP {status} {msg}: the webhook was "
                "deleted or its URL is wrong"
            )
        raise PermanentError(f"discord {self.name}: HTTP {status} {msg} {_errors(body)}")

    def _capped(self, seconds: float, what: str) -> float:
        if seconds <= self.max_wait:
            return seconds
        log.warning(
            "discord %s: %s asks to wait %.0fs, longer than max_wait %.0fs: waiting %.0fs and "
            "trying again (the alert stays pending)",
            self.name,
            what,
            seconds,
            self.max_wait,
            self.max_wait,
        )
        return self.max_wait

    def _observe_bucket(self, headers: Any) -> None:
        """Pace by the bucket headers: when none remain, wait until the bucket resets (v10:
        X-RateLimit-Reset-After in seconds with a fraction), at most `max_wait`."""
        if headers.get("X-RateLimit-Remaining") == "0":
            after = _float(headers.get("X-RateLimit-Reset-After"))
            if after is not None and 0 < after < float("inf"):
                self.gate.pause(self._capped(after, "the empty rate-limit bucket"))


def _errors(body: dict[str, Any]) -> str:
    errs = body.get("errors")
    return trim(orjson.dumps(errs).decode(), 300) if errs else ""
