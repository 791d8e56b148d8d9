"""Alerts to Telegram chats (and forum topics) through python-telegram-bot's ``Bot``.

Sending uses PTB's ``Bot.send_message`` / ``Bot.send_photo`` over its httpx transport
(``HTTPXRequest``), pointed at the configured Bot API server with ``base_url`` /
``base_file_url`` (the token is appended to them, as PTB documents when no ``{token}`` is
given), and PTB's typed errors decide what happens next. What this relies on (read against
python-telegram-bot 22.8, ``telegram/request/_baserequest.py`` and ``_httpxrequest.py``):

* a Bot API error whose ``parameters`` has ``migrate_to_chat_id`` raises ``ChatMigrated``
  (``new_chat_id``), one with ``retry_after`` raises ``RetryAfter``; otherwise 400 is
  ``BadRequest``, 403 ``Forbidden``, 401/404 ``InvalidToken``, and any other status (5xx)
  ``NetworkError`` with the description as message;
* transport failures are ``TimedOut`` (httpx timeouts; a pool timeout says the request was
  *not* sent) or ``NetworkError``, raised ``from`` the httpx exception, so ``__cause__`` tells
  a connection that was never made (``httpx.ConnectError``, ``ConnectTimeout``,
  ``PoolTimeout``: known not sent) from one lost after the request went out (unknown);
* ``RetryAfter.retry_after`` is an int (or a ``timedelta`` with ``PTB_TIMEDELTA``), read here
  without PTB's deprecation warning.

Two things are not typed: which ``BadRequest`` is a formatting or an image problem (matched
on Telegram's description, as there is no other signal), and the pre-2017 flood answer
without ``parameters`` ("Too Many Requests: retry after 34"): :class:`_Request` rewrites that
answer into today's shape, so PTB raises ``RetryAfter`` for it too.

``Bot.initialize()`` is never called (it would call ``getMe`` at start-up, fail while Telegram
is down, and put the token in its error); the request objects are this module's own, closed in
:meth:`TelegramClient.close`. The token is part of every request URL, so nothing here puts a
URL, or a PTB message that could hold one, in an error or a log line unredacted.

Pacing: :class:`TelegramPacing` holds one pacer per chat (1 message a second to a private chat,
20 a minute to a group, supergroup or channel: negative ids and ``@usernames``) under one
pacer for the whole bot (30 a second). :func:`shared_pacing` gives the alert workers and the
command bot's rate limiter the same instance in a process, so replies and alerts share the
limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import warnings
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import httpx
import orjson
from telegram import Bot, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest, RequestData
from telegram.warnings import PTBDeprecationWarning

from bot.core.models import Alert
from bot.core.pacing import Pacer
from bot.core.retry_after import parse_retry_after as parse_retry_after_header
from bot.notify.base import (
    AttachmentRejected,
    FormattingRejected,
    Part,
    PermanentError,
    RateLimited,
    TransientError,
)
from bot.notify.config import TelegramChat, TelegramConfig
from bot.notify.format import (
    TG_CAPTION_LIMIT,
    TG_TEXT_LIMIT,
    alert_lines,
    group_lines,
    tg_len,
    trim,
)
from bot.notify.ledger import follow_migrations

# PTB 22.2+ warns whenever RetryAfter.retry_after is read as an int (its constructor does), and
# offers PTB_TIMEDELTA to opt in to the coming timedelta instead; retry_after_seconds reads
# either, so the opt-in is taken (unless set otherwise) and the warning does not fire.
os.environ.setdefault("PTB_TIMEDELTA", "true")

_RETRY_IN_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?)", re.I)
#: Destination-wide refusals in a 400's description (the chat is gone or closed to the bot).
_CHAT_GONE = ("chat not found", "not enough rights", "have no rights", "chat_write_forbidden")
#: httpx failures that mean the request never left: nothing can have been posted.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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


def retry_after_seconds(e: RetryAfter) -> float:
    """``e.retry_after`` in seconds, whichever type PTB gives it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        ra: Any = e.retry_after
    return ra.total_seconds() if isinstance(ra, timedelta) else float(ra)


def is_group(chat_id: int | str) -> bool:
    """Groups, supergroups and channels have negative ids (or an ``@username``)."""
    s = str(chat_id)
    return s.startswith(("-", "@"))


class TelegramPacing:
    """One pacer per chat (Telegram's per-chat and per-group limits) under a global one."""

    def __init__(self, cfg: TelegramConfig) -> None:
        self.cfg = cfg
        self.global_ = Pacer(cfg.global_min_interval)
        self._chats: dict[str, Pacer] = {}

    def pacer(self, chat_id: int | str, min_interval: float | None = None) -> Pacer:
        """The pacer of `chat_id`; `min_interval` (a chat's own setting) applies when the
        pacer is made, which is when the chat is configured or first written to."""
        key = str(chat_id)
        p = self._chats.get(key)
        if p is None:
            if min_interval is None:
                group = is_group(key)
                min_interval = self.cfg.group_min_interval if group else self.cfg.min_interval
            p = self._chats[key] = Pacer(min_interval, parent=self.global_)
        return p


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, TelegramPacing]] = (
    weakref.WeakKeyDictionary()
)


def shared_pacing(token: str, cfg: TelegramConfig) -> TelegramPacing:
    """The one :class:`TelegramPacing` of a bot token in the running event loop (pacers belong
    to a loop). Keyed by a hash of the token, so the token itself is not kept here."""
    loop = asyncio.get_running_loop()
    per_loop = _SHARED.setdefault(loop, {})
    key = hashlib.sha256(token.encode()).hexdigest()[:16]
    p = per_loop.get(key)
    if p is None:
        p = per_loop[key] = TelegramPacing(cfg)
    return p


class _Request(HTTPXRequest):
    """PTB's httpx transport, with the pre-2017 flood answer (429 without ``parameters``)
    rewritten so PTB raises its typed ``RetryAfter`` for it."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        write_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        connect_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        pool_timeout: Any = HTTPXRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        code, payload = await super().do_request(
            url,
            method,
            request_data,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )
        if code == 429:
            try:
                body = orjson.loads(payload)
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            params = body.get("parameters")
            if not (isinstance(params, dict) and params.get("retry_after")):
                wait = max(1, int(parse_retry_after(body) + 0.999))
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": str(body.get("description", "Too Many Requests")),
                    "parameters": {"retry_after": wait},
                }
                payload = orjson.dumps(body)
        return code, payload


class Migrated(Exception):
    """The chat became a supergroup with a new id (PTB's ``ChatMigrated``)."""

    def __init__(self, new_chat_id: int) -> None:
        super().__init__(f"migrated to {new_chat_id}")
        self.new_chat_id = new_chat_id


class TelegramClient:
    """PTB's ``Bot`` for sending alerts: one call, one classified outcome."""

    def __init__(self, api_base: str, token: str, timeout: float) -> None:
        base = api_base.rstrip("/")
        self._token = token
        self._request = _Request(
            connection_pool_size=8,
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
            media_write_timeout=timeout,
        )
        # Bot wants a second transport for getUpdates; alerts never poll, so it stays idle.
        self._updates = HTTPXRequest(connection_pool_size=1)
        self.bot = Bot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=self._request,
            get_updates_request=self._updates,
        )

    async def close(self) -> None:
        await self._request.shutdown()
        await self._updates.shutdown()

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "***")[:300]

    async def send(
        self,
        chat_id: int | str,
        text: str,
        *,
        html: bool,
        thread_id: int | None,
        photo: bytes | None,
    ) -> str:
        """Send one message; its message id. Raises a DeliveryError subclass (or
        :class:`Migrated`)."""
        method = "sendPhoto" if photo is not None else "sendMessage"
        mode = "HTML" if html else None
        try:
            if photo is not None:
                msg = await self.bot.send_photo(
                    chat_id,
                    photo=photo,
                    caption=text,
                    parse_mode=mode,
                    message_thread_id=thread_id,
                )
            else:
                msg = await self.bot.send_message(
                    chat_id,
                    text,
                    parse_mode=mode,
                    message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
        except ChatMigrated as e:
            raise Migrated(int(e.new_chat_id)) from None
        except RetryAfter as e:
            raise RateLimited(retry_after_seconds(e), f"telegram {method}: flood control") from None
        except BadRequest as e:
            raise self._bad_request(method, self._clean(e.message), photo is not None) from None
        except Forbidden as e:
            raise PermanentError(
                f"telegram {method}: 403 {self._clean(e.message)}", destination=True
            ) from None
        except InvalidToken as e:
            raise PermanentError(
                f"telegram {method}: the bot token was refused ({self._clean(e.message)})",
                destination=True,
            ) from None
        except TimedOut as e:
            never = isinstance(e.__cause__, _NEVER_SENT)
            raise TransientError(
                f"telegram {method}: no answer within the timeout", maybe_sent=not never
            ) from None
        except NetworkError as e:  # a 5xx answer, or the connection failed
            never = isinstance(e.__cause__, _NEVER_SENT)
            raise TransientError(
                f"telegram {method}: {self._clean(e.message)}", maybe_sent=not never
            ) from None
        except TelegramError as e:  # an answer PTB could not read: it may have been posted
            raise TransientError(f"telegram {method}: {self._clean(e.message)}") from None
        return str(msg.message_id)

    @staticmethod
    def _bad_request(method: str, desc: str, photo: bool) -> Exception:
        low = desc.lower()
        if "can't parse entities" in low or "can't find end" in low or "unsupported start" in low:
            return FormattingRejected(f"telegram {method}: {desc}")
        if photo and ("photo" in low or "image" in low or "file" in low):
            return AttachmentRejected(f"telegram {method}: {desc}")
        gone = any(s in low for s in _CHAT_GONE)
        return PermanentError(f"telegram {method}: 400 {desc}", destination=gone)


class TelegramDestination:
    """One chat (or forum topic) that receives alerts; follows the chat when its group is
    upgraded to a supergroup (the new id is handed to `on_migrate` to be kept)."""

    def __init__(
        self,
        chat: TelegramChat,
        client: TelegramClient,
        zone: str,
        pacing: TelegramPacing,
        *,
        on_migrate: Callable[[int | str, int], Awaitable[None]] | None = None,
    ) -> None:
        self.chat = chat
        self.name = chat.name
        self.client = client
        self.zone = chat.timezone or zone
        self.pacing = pacing
        self.chat_id: int | str = chat.chat_id
        self._on_migrate = on_migrate
        self.pacing.pacer(self.chat_id, chat.min_interval)

    def follow(self, migrations: Mapping[str, int]) -> None:
        """Send to the supergroup the configured chat became, if a migration was recorded."""
        new = follow_migrations(self.chat.chat_id, dict(migrations))
        if new != self.chat_id:
            self.chat_id = new
            self.pacing.pacer(new, self.chat.min_interval)

    @property
    def gate(self) -> Pacer:
        return self.pacing.pacer(self.chat_id, self.chat.min_interval)

    @property
    def global_gate(self) -> Pacer:
        return self.pacing.global_

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
        text = part.plain if plain else part.text
        for _ in range(4):  # a group upgraded twice is rare; more is a loop
            try:
                return await self.client.send(
                    self.chat_id,
                    text,
                    html=not plain,
                    thread_id=self.chat.topic_id,
                    photo=part.photo,
                )
            except Migrated as m:  # refused before sending: resend to the new id at once
                old, self.chat_id = self.chat_id, m.new_chat_id
                if self._on_migrate is not None:
                    await self._on_migrate(old, m.new_chat_id)
        raise PermanentError(f"telegram: chat {self.chat.chat_id} keeps migrating")
