"""Alerts to Discord webhooks: an embed coloured by severity, the chart as an attachment.

A webhook URL carries its secret token: it never appears in an error message or a log line.
Requests use ``?wait=true`` so Discord confirms the message was saved and returns its id.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

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


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def discord_retry_after(status_body: dict[str, Any], headers: Any) -> float:
    """Seconds to wait after a Discord 429: body retry_after (fractional), else Retry-After,
    else 5."""
    ra = status_body.get("retry_after")
    if isinstance(ra, int | float):
        return float(ra)
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
        url = hook.resolve_url()
        parts = urlsplit(url)
        q = dict(parse_qsl(parts.query))
        q["wait"] = "true"
        if hook.thread_id is not None:
            q["thread_id"] = str(hook.thread_id)
        self._url = urlunsplit(parts._replace(query=urlencode(q)))
        self.secret = parts.path.rstrip("/").rsplit("/", 1)[-1]

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
            raise RateLimited(
                discord_retry_after(body, headers),
                f"discord {self.name}: {msg} (scope {scope})",
                global_=is_global,
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

    def _observe_bucket(self, headers: Any) -> None:
        """Pace by the bucket headers: when none remain, wait until the bucket resets."""
        if headers.get("X-RateLimit-Remaining") == "0":
            after = _float(headers.get("X-RateLimit-Reset-After"))
            if after is not None and after > 0:
                self.gate.pause(after)


def _errors(body: dict[str, Any]) -> str:
    errs = body.get("errors")
    return trim(orjson.dumps(errs).decode(), 300) if errs else ""
