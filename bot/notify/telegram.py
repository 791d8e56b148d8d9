"""Alerts to Telegram chats (and forum topics) through the Bot API, with aiohttp.

The request URL contains the bot token, so nothing here ever puts a URL in a message or a log
line; errors carry the Bot API method and its description only.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson

from bot.core.models import Alert
from bot.core.retry_after import parse_retry_after as parse_retry_after_header
from bot.notify.base import (
    AttachmentRejected,
    FormattingRejected,
    Part,
    PermanentError,
    RateLimited,
    TransientError,
    post,
)
from bot.notify.config import TelegramChat
from bot.notify.format import (
    TG_CAPTION_LIMIT,
    TG_TEXT_LIMIT,
    alert_lines,
    group_lines,
    tg_len,
    trim,
)

_RETRY_IN_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?)", re.I)


def parse_retry_after(body: dict[str, Any], headers: Any = None) -> float:
    """Seconds to wait after a Telegram 429: parameters.retry_after, else the description
    ("Too Many Requests: retry after 34", the pre-2017 format), else Retry-After, else 5."""
    params = body.get("parameters") or {}
    if isinstance(params, dict) and isinstance(params.get("retry_after"), int | float):
        return float(params["retry_after"])
    m = _RETRY_IN_TEXT.search(str(body.get("description", "")))
    if m:
        return float(m.group(1))
    header = parse_retry_after_header(headers.get("Retry-After")) if headers is not None else None
    return header if header is not None else 5.0


class TelegramClient:
    """A thin Bot API client: one method call, one classified outcome."""

    def __init__(
        self, session: aiohttp.ClientSession, api_base: str, token: str, timeout: float
    ) -> None:
        self.session = session
        self._base = f"{api_base.rstrip('/')}/bot{token}/"
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(
        self, method: str, params: dict[str, Any], photo: bytes | None = None
    ) -> dict[str, Any]:
        """Call `method`; return `result`. Raises a DeliveryError subclass on failure."""
        url = self._base + method
        what = f"telegram {method}"
        if photo is None:
            status, raw, headers = await post(
                self.session,
                url,
                what=what,
                client_timeout=self.timeout,
                json_body=orjson.dumps(params),
            )
        else:
            form = aiohttp.FormData()
            for k, v in params.items():
                form.add_field(k, v if isinstance(v, str) else orjson.dumps(v).decode())
            form.add_field("photo", photo, filename="chart.png", content_type="image/png")
            status, raw, headers = await post(
                self.session, url, what=what, client_timeout=self.timeout, form=form
            )
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            if status >= 500 or status == 429:
                raise TransientError(f"telegram {method}: HTTP {status}") from None
            raise PermanentError(f"telegram {method}: HTTP {status} with a non-JSON body") from None
        if body.get("ok") is True and status < 300:
            res = body.get("result")
            return res if isinstance(res, dict) else {"result": res}
        code = int(body.get("error_code") or status)
        desc = str(body.get("description", ""))[:300]
        if code == 429 or status == 429:
            raise RateLimited(parse_retry_after(body, headers), f"telegram {method}: {desc}")
        if code >= 500 or status >= 500:
            raise TransientError(f"telegram {method}: {code} {desc}")
        low = desc.lower()
        if code == 400 and (
            "can't parse entities" in low
            or "can't find end" in low
            or "unsupported start tag" in low
        ):
            raise FormattingRejected(f"telegram {method}: {desc}")
        if (
            code == 400
            and photo is not None
            and ("photo" in low or "image" in low or "file" in low)
        ):
            raise AttachmentRejected(f"telegram {method}: {desc}")
        migrate = (body.get("parameters") or {}).get("migrate_to_chat_id")
        if migrate:
            raise PermanentError(
                f"telegram {method}: the group became a supergroup; set chat_id = {migrate} "
                "in the config"
            )
        raise PermanentError(f"telegram {method}: {code} {desc}")


class TelegramDestination:
    """One chat (or forum topic) that receives alerts."""

    def __init__(self, chat: TelegramChat, client: TelegramClient, zone: str) -> None:
        self.chat = chat
        self.name = chat.name
        self.client = client
        self.zone = chat.timezone or zone

    def render(self, alert: Alert, chart: bytes | None, note: str | None) -> list[Part]:
        """Text first, then the chart; one photo with caption when everything fits."""
        lines = alert_lines(alert, self.zone, note)
        groups = group_lines(lines, TG_TEXT_LIMIT)
        html_msgs = ["\n".join(ln.html for ln in g) for g in groups]
        plain_msgs = ["\n".join(ln.plain for ln in g) for g in groups]
        if chart is not None and len(html_msgs) == 1 and tg_len(html_msgs[0]) <= TG_CAPTION_LIMIT:
            return [Part(html_msgs[0], plain_msgs[0], photo=chart)]
        parts = [Part(h, p) for h, p in zip(html_msgs, plain_msgs, strict=True)]
        if chart is not None:
            cap = trim(lines[0].plain, TG_CAPTION_LIMIT)
            parts.append(
                Part(
                    lines[0].html if len(lines[0].html) <= TG_CAPTION_LIMIT else cap,
                    cap,
                    photo=chart,
                )
            )
        return parts

    async def send(self, part: Part, *, plain: bool) -> str:
        params: dict[str, Any] = {"chat_id": self.chat.chat_id}
        if self.chat.topic_id is not None:
            params["message_thread_id"] = self.chat.topic_id
        text = part.plain if plain else part.text
        if not plain:
            params["parse_mode"] = "HTML"
        if part.photo is not None:
            params["caption"] = text
            res = await self.client.call("sendPhoto", params, photo=part.photo)
        else:
            params["text"] = text
            params["link_preview_options"] = {"is_disabled": True}
            res = await self.client.call("sendMessage", params)
        return str(res.get("message_id", ""))
