"""A local fake Telegram Bot API server (aiohttp, loopback) that speaks the real shapes.

- ``POST/GET /bot<token>/<method>`` with JSON, urlencoded or multipart bodies (PTB sends form
  fields with JSON-encoded values; our sender sends JSON, and multipart for photos).
- Answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description",
  "parameters"?}``; a wrong token gets 401 "Unauthorized", like the real server.
- Checks ``parse_mode=HTML`` the way Telegram does (allowed tags, balanced, escaped ``<>&``)
  and the 4096 / 1024 limits (UTF-16 units, after entity parsing).
- ``script`` queues canned answers (e.g. the recorded 429 bodies in ../shared/fixtures/telegram)
  that the next send requests get instead of success.
- ``updates`` feeds ``getUpdates`` (long polling honours ``timeout`` and ``offset``).
- Flood limits like Telegram's, when set: ``chat_limit`` (messages per window to one chat),
  ``group_limit`` (to one group, supergroup or channel: a negative id or an ``@username``) and
  ``global_limit`` (the whole bot); over a limit the answer is a 429 with
  ``parameters.retry_after`` (whole seconds, as the Bot API sends it), counted in ``flooded``.
- ``migrate(old, new)``: the group ``old`` became the supergroup ``new``; sends to ``old`` get
  400 "group chat was upgraded to a supergroup chat" with ``parameters.migrate_to_chat_id``.
- Faults: ``down`` answers every send with that HTTP status before accepting it (an outage
  behind a proxy); ``faults`` queues what happens *after* the next sends were accepted:
  ``"500"`` (an error answer although the message was posted), ``"drop"`` (the connection is
  closed without an answer) or ``"slow"`` (the answer comes after ``slow_seconds``).

Run standalone for demos: ``python -m tests.fake_telegram --port 8081 --token 123:abc``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_TAG = re.compile(r"</?([a-zA-Z-]+)(\s[^<>]*)?>")
SEND_METHODS = {"sendMessage", "sendPhoto"}
BOT_ID = 7000000001


class HtmlError(ValueError):
    pass


def parse_html(text: str) -> str:
    """Visible text of a Telegram-HTML message, or HtmlError with Telegram's wording."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "<":
            m = _TAG.match(text, i)
            if not m:
                raise HtmlError(
                    f"Bad Request: can't parse entities: Unsupported start tag at byte offset {i}"
                )
            name = m.group(1).lower()
            if name not in ALLOWED_TAGS:
                raise HtmlError(
                    f"Bad Request: can't parse entities: Unsupported start tag "
                    f'"{name}" at byte offset {i}'
                )
            if m.group(0).startswith("</"):
                if not stack or stack[-1] != name:
                    raise HtmlError(
                        f"Bad Request: can't parse entities: Unmatched end tag at "
                        f'byte offset {i}, expected "</{stack[-1] if stack else ""}>'
                        f'", found "</{name}>"'
                    )
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif c == "&":
            m = _ENTITY.match(text, i)
            if not m:
                raise HtmlError(
                    f"Bad Request: can't parse entities: Character '&' is reserved "
                    f"and must be escaped at byte offset {i}"
                )
            out.append(html.unescape(m.group(0)))
            i = m.end()
        elif c == ">":
            raise HtmlError(
                f"Bad Request: can't parse entities: Character '>' is reserved and "
                f"must be escaped at byte offset {i}"
            )
        else:
            out.append(c)
            i += 1
    if stack:
        raise HtmlError(
            f"Bad Request: can't parse entities: Can't find end tag corresponding "
            f'to start tag "{stack[-1]}"'
        )
    return "".join(out)


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


@dataclass
class Canned:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    """A message the fake accepted."""

    message_id: int
    method: str
    chat_id: str
    thread_id: int | None
    text: str  # raw text or caption as sent (HTML source when parse_mode=HTML)
    visible: str  # after entity parsing
    parse_mode: str | None
    photo: bytes | None
    at: float


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-fake-token-abcdef") -> None:
        self.token = token
        self.sent: list[Sent] = []
        self.calls: list[str] = []  # every method called, in order
        self.script: list[Canned] = []  # answers for the next send requests
        self.updates: list[dict[str, Any]] = []
        self._update_id = 1000
        self._new_update = asyncio.Event()
        self._next_id = 1
        self.before_accept: Callable[[int], Awaitable[bool]] | None = None
        self.after_accept: Callable[[Sent], Awaitable[None]] | None = None
        self.send_requests = 0
        self.delay = 0.0  # seconds before each send answer
        self.chat_limit: tuple[int, float] | None = None  # (messages, seconds) per chat
        self.group_limit: tuple[int, float] | None = None  # per group / supergroup / channel
        self.global_limit: tuple[int, float] | None = None  # the whole bot
        self.flooded = 0  # 429s answered because of the limits above
        self._windows: dict[str, list[float]] = {}
        self.migrated: dict[str, int] = {}  # old chat id -> supergroup id
        self.down: int | None = None  # answer sends with this status, before accepting
        self.faults: list[str] = []  # after acceptance: "500" | "drop" | "slow"
        self.slow_seconds = 3.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeTelegram:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- test helpers ------------------------------------------------------------------------

    def push_update_message(
        self, text: str, *, user_id: int, chat_id: int, username: str = "someone"
    ) -> None:
        """Queue an incoming message (a command when it starts with '/')."""
        self._update_id += 1
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": user_id, "is_bot": False, "first_name": username, "username": username},
            "text": text,
        }
        if text.startswith("/"):
            cmd = text.split()[0]
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(cmd)}]
        self.updates.append({"update_id": self._update_id, "message": msg})
        self._new_update.set()

    def push_service_message(self, chat_id: int, fields: dict[str, Any]) -> None:
        """Queue a service message in a group, e.g. ``{"migrate_to_chat_id": -100...}``."""
        self._update_id += 1
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "group", "title": "desk"},
            "from": {"id": 1, "is_bot": False, "first_name": "admin"},
            **fields,
        }
        self.updates.append({"update_id": self._update_id, "message": msg})
        self._new_update.set()

    def to_chat(self, chat_id: int | str) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == str(chat_id)]

    def migrate(self, old: int, new: int) -> None:
        """The group `old` was upgraded to the supergroup `new`."""
        self.migrated[str(old)] = new

    def _flood_wait(self, chat_id: str) -> int | None:
        """Seconds to wait when sending to `chat_id` now would exceed a limit, else None (and
        the message is counted)."""
        now = time.monotonic()
        group = chat_id.startswith(("-", "@"))
        checks = [
            ("chat:" + chat_id, self.chat_limit),
            ("group:" + chat_id, self.group_limit if group else None),
            ("global", self.global_limit),
        ]
        for key, lim in checks:
            if lim is None:
                continue
            n, window = lim
            recent = [t for t in self._windows.get(key, []) if now - t < window]
            self._windows[key] = recent
            if len(recent) >= n:
                return max(1, int(recent[0] + window - now + 0.999))
        for key, lim in checks:
            if lim is not None:
                self._windows[key].append(now)
        return None

    # ---- protocol ----------------------------------------------------------------------------

    def _next_message_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _answer(
        status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=headers or {},
        )

    def _error(self, code: int, desc: str, params: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": desc}
        if params:
            body["parameters"] = params
        return self._answer(code, body)

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], bytes | None]:
        ctype = request.content_type
        photo: bytes | None = None
        params: dict[str, Any] = {}
        if ctype == "application/json":
            raw = await request.read()
            params = json.loads(raw) if raw else {}
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for k, v in form.items():
                if hasattr(v, "file"):
                    data = v.file.read()
                    if k == "photo":
                        photo = data
                    else:
                        params[k] = data
                else:
                    params[k] = str(v) if k in ("text", "caption") else _maybe_json(str(v))
        params.update({k: _maybe_json(v) for k, v in request.query.items()})
        if isinstance(params.get("photo"), str) and params["photo"].startswith("attach://"):
            photo = params.pop("photo").encode()
        return params, photo

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        self.calls.append(method)
        params, photo = await self._params(request)
        if method == "getMe":
            return self._answer(200, {"ok": True, "result": self._me()})
        if method in ("deleteWebhook", "setMyCommands", "close", "logOut"):
            return self._answer(200, {"ok": True, "result": True})
        if method == "getUpdates":
            return await self._get_updates(params)
        if method in SEND_METHODS:
            return await self._send(request, method, params, photo)
        return self._error(404, "Not Found")

    def _me(self) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "stressbot-fake",
            "username": "stressbot_fake_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 2.0)  # keep tests quick
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout)
        limit = int(params.get("limit") or 100)
        return self._answer(200, {"ok": True, "result": self.updates[:limit]})

    async def _send(
        self, request: web.Request, method: str, params: dict[str, Any], photo: bytes | None
    ) -> web.StreamResponse:
        self.send_requests += 1
        n = self.send_requests
        if self.before_accept is not None and not await self.before_accept(n):
            return self._error(500, "Internal Server Error")
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            c = self.script.pop(0)
            return self._answer(c.status, c.body, c.headers)
        if self.down is not None:
            return web.Response(status=self.down, text="<html>Bad Gateway</html>")
        if "chat_id" not in params:
            return self._error(400, "Bad Request: chat_id is empty")
        if str(params["chat_id"]) in self.migrated:
            return self._error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[str(params["chat_id"])]},
            )
        text_key = "text" if method == "sendMessage" else "caption"
        text = str(params.get(text_key, ""))
        if method == "sendMessage" and not text:
            return self._error(400, "Bad Request: message text is empty")
        if method == "sendPhoto" and not photo:
            return self._error(400, "Bad Request: there is no photo in the request")
        if photo is not None and not photo.startswith(b"\x89PNG\r\n\x1a\n"):
            return self._error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        mode = params.get("parse_mode")
        try:
            visible = parse_html(text) if str(mode).upper() == "HTML" else text
        except HtmlError as e:
            return self._error(400, str(e))
        limit = 4096 if method == "sendMessage" else 1024
        if utf16_len(visible) > limit:
            return self._error(
                400,
                "Bad Request: message is too long"
                if limit == 4096
                else "Bad Request: message caption is too long",
            )
        wait = self._flood_wait(str(params["chat_id"]))
        if wait is not None:
            self.flooded += 1
            return self._error(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        thread = params.get("message_thread_id")
        chat_id = params["chat_id"]
        sent = Sent(
            self._next_message_id(),
            method,
            str(chat_id),
            int(thread) if thread is not None else None,
            text,
            visible,
            str(mode) if mode else None,
            photo,
            time.time(),
        )
        self.sent.append(sent)
        if self.after_accept is not None:
            await self.after_accept(sent)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "500":
            return self._error(500, "Internal Server Error")
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # accepted, but the answer never leaves
            return web.Response(status=200)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        result: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(sent.at),
            "chat": {
                "id": chat_id if isinstance(chat_id, int) else _int_or(chat_id),
                "type": "supergroup" if str(chat_id).startswith("-") else "private",
            },
            "from": self._me() | {"is_bot": True},
        }
        if thread is not None:
            result["message_thread_id"] = int(thread)
            result["is_topic_message"] = True
        if method == "sendMessage":
            result["text"] = visible
        else:
            result["caption"] = visible
            result["photo"] = [
                {
                    "file_id": f"AgAC{sent.message_id}",
                    "file_unique_id": f"AQAD{sent.message_id}",
                    "width": 800,
                    "height": 500,
                    "file_size": len(photo or b""),
                }
            ]
        return self._answer(200, {"ok": True, "result": result})


def _maybe_json(v: str) -> Any:
    if (v and v[0] in '{["') or v in ("true", "false", "null") or re.fullmatch(r"-?\d+", v or "x"):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _int_or(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


async def _serve(port: int, token: str) -> None:
    fake = await FakeTelegram(token).start(port)

    async def show(s: Sent) -> None:
        print(
            json.dumps(
                {
                    "chat": s.chat_id,
                    "thread": s.thread_id,
                    "method": s.method,
                    "photo_bytes": len(s.photo or b""),
                    "text": s.visible,
                }
            ),
            flush=True,
        )

    fake.after_accept = show
    print(f"fake Telegram Bot API on {fake.base}/bot<token>/", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--token", default="123456:TEST-fake-token-abcdef")
    a = ap.parse_args()
    asyncio.run(_serve(a.port, a.token))
