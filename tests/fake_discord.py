"""A local fake Discord webhook server (aiohttp, loopback) that speaks the real shapes.

- ``POST /api/v{N}/webhooks/{id}/{token}[?wait=true][&thread_id=...]`` with a JSON body or
  multipart (``payload_json`` + ``files[n]``), as the Execute Webhook endpoint takes them;
  ``POST /api/webhooks/...`` (no version) is the default version, v6, whose 429s give
  ``retry_after`` and ``Retry-After`` in milliseconds and ``X-RateLimit-Reset-After`` in
  whole seconds (how the unversioned webhook answered, discord-api-docs issue #4722; v8
  changed them to seconds with a fraction). Each request is logged in `log` (monotonic time,
  webhook id, API version or None).
- ``wait=true`` answers 200 with a message object (snowflake ``id``); otherwise 204.
- Validates content (2000), embeds (10; title 256, description 4096, 25 fields of 256/1024,
  footer 2048, 6000 in all) and ``attachment://`` references, answering 400 with code 50035
  "Invalid Form Body" and an ``errors`` tree like Discord does; unknown webhooks get 404/10015.
- Every answer carries the ``X-RateLimit-*`` bucket headers; exceeding the bucket returns a
  429 shaped like ../shared/fixtures/discord/429_user_rate_limit.json.
- ``script`` queues canned answers (e.g. the recorded 429s) for the next requests.

Run standalone for demos: ``python -m tests.fake_discord --port 8082``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EPOCH_MS = 1420070400000  # Discord epoch


@dataclass
class Canned:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Posted:
    id: str
    webhook: str
    thread_id: str | None
    payload: dict[str, Any]
    files: dict[str, bytes]
    at: float

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")


class FakeDiscord:
    def __init__(self, bucket_limit: int = 5, bucket_window: float = 2.0) -> None:
        self.hooks: dict[str, str] = {}  # webhook id -> token
        self.posted: list[Posted] = []
        self.script: list[Canned] = []
        self.requests = 0
        self.log: list[tuple[float, str, int | None]] = []  # (monotonic, hook, API version)
        self.before_accept: Callable[[int], Awaitable[bool]] | None = None
        self.after_accept: Callable[[Posted], Awaitable[None]] | None = None
        self.bucket_limit = bucket_limit
        self.bucket_window = bucket_window
        self._buckets: dict[str, tuple[float, int]] = {}  # hook -> (window start, used)
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_webhook(self, hook_id: str, token: str) -> str:
        """Register a webhook; returns its URL."""
        self.hooks[hook_id] = token
        return f"http://127.0.0.1:{self.port}/api/webhooks/{hook_id}/{token}"

    async def start(self, port: int = 0) -> FakeDiscord:
        app = web.Application(client_max_size=25 * 1024 * 1024)
        app.router.add_post("/api/webhooks/{id}/{token}", self._handle)
        app.router.add_post("/api/v{version:[0-9]+}/webhooks/{id}/{token}", self._handle)
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

    def to_hook(self, hook_id: str) -> list[Posted]:
        return [p for p in self.posted if p.webhook == hook_id]

    # ---- protocol ----------------------------------------------------------------------------

    def _snowflake(self) -> str:
        self._seq += 1
        return str(((int(time.time() * 1000) - EPOCH_MS) << 22) | (self._seq & 0xFFF))

    def times(self, hook: str) -> list[float]:
        """Monotonic times of the requests to one webhook."""
        return [t for t, h, _ in self.log if h == hook]

    def _bucket(self, hook: str) -> tuple[dict[str, str], bool]:
        now = time.time()
        start, used = self._buckets.get(hook, (now, 0))
        if now - start >= self.bucket_window:
            start, used = now, 0
        ok = used < self.bucket_limit
        if ok:
            used += 1
        self._buckets[hook] = (start, used)
        reset_after = max(0.0, start + self.bucket_window - now)
        return {
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(self.bucket_limit - used),
            "X-RateLimit-Reset": f"{start + self.bucket_window:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"fake{abs(hash(hook)) % 10**8:08d}",
        }, ok

    @staticmethod
    def _json(status: int, body: dict[str, Any] | None, headers: dict[str, str]) -> web.Response:
        hdrs = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if body is None:
            return web.Response(status=status, headers=hdrs)
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=hdrs,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hook, token = request.match_info["id"], request.match_info["token"]
        version = int(request.match_info["version"]) if "version" in request.match_info else None
        if self.hooks.get(hook) != token:
            return self._json(404, {"message": "Unknown Webhook", "code": 10015}, {})
        self.requests += 1
        self.log.append((time.monotonic(), hook, version))
        n = self.requests
        if self.before_accept is not None and not await self.before_accept(n):
            return self._json(502, {"message": "Bad Gateway", "code": 0}, {})
        headers, ok = self._bucket(hook)
        if self.script:
            c = self.script.pop(0)
            return self._json(c.status, c.body, c.headers)
        if not ok:
            retry = float(headers["X-RateLimit-Reset-After"])
            if version is None or version < 8:  # the default (v6) units
                ms = int(retry * 1000) + 1
                headers |= {"Retry-After": str(ms), "X-RateLimit-Reset-After": str(int(retry) + 1)}
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": ms,
                    "global": False,
                }
                return self._json(429, body, headers)
            headers |= {"Retry-After": str(int(retry) + 1), "X-RateLimit-Scope": "user"}
            return self._json(
                429,
                {
                    "message": "You are being rate limited.",
                    "retry_after": round(retry, 3),
                    "global": False,
                },
                headers,
            )
        payload, files = await self._read(request)
        if payload is None:
            return self._json(
                400, {"message": "Cannot send an empty message", "code": 50006}, headers
            )
        errors = validate(payload, files)
        if errors:
            return self._json(
                400, {"message": "Invalid Form Body", "code": 50035, "errors": errors}, headers
            )
        if not (payload.get("content") or payload.get("embeds") or files):
            return self._json(
                400, {"message": "Cannot send an empty message", "code": 50006}, headers
            )
        thread = request.query.get("thread_id")
        posted = Posted(self._snowflake(), hook, thread, payload, files, time.time())
        self.posted.append(posted)
        if self.after_accept is not None:
            await self.after_accept(posted)
        if request.query.get("wait", "false").lower() != "true":
            return self._json(204, None, headers)
        return self._json(200, self._message(posted), headers)

    async def _read(self, request: web.Request) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            raw = await request.read()
            return (json.loads(raw) if raw else None), files
        if request.content_type == "multipart/form-data":
            payload: dict[str, Any] | None = None
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(await part.read())  # type: ignore[union-attr]
                elif part.name and part.name.startswith("files["):  # type: ignore[union-attr]
                    fname = part.filename or part.name  # type: ignore[union-attr]
                    files[fname] = bytes(await part.read())  # type: ignore[union-attr]
            return payload, files
        return None, files

    def _message(self, p: Posted) -> dict[str, Any]:
        return {
            "id": p.id,
            "type": 0,
            "channel_id": p.thread_id or "1100000000000000000",
            "webhook_id": p.webhook,
            "content": p.content,
            "embeds": p.embeds,
            "attachments": [
                {
                    "id": str(i),
                    "filename": n,
                    "size": len(b),
                    "url": f"https://cdn.example.invalid/{n}",
                    "content_type": "image/png",
                }
                for i, (n, b) in enumerate(p.files.items())
            ],
            "author": {
                "id": p.webhook,
                "username": p.payload.get("username") or "stressbot",
                "bot": True,
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(p.at)),
            "mentions": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
        }


def validate(payload: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Discord's Invalid Form Body checks that matter for alerts; {} when valid."""
    err: dict[str, Any] = {}

    def bad(path: list[str], code: str, msg: str) -> None:
        node = err
        for k in path:
            node = node.setdefault(k, {})
        node["_errors"] = [{"code": code, "message": msg}]

    content = payload.get("content")
    if content is not None and len(str(content)) > 2000:
        bad(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        bad(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    for i, e in enumerate(embeds):
        p = ["embeds", str(i)]
        total = 0
        for key, lim in (("title", 256), ("description", 4096)):
            v = str(e.get(key) or "")
            total += len(v)
            if len(v) > lim:
                bad([*p, key], "BASE_TYPE_MAX_LENGTH", f"Must be {lim} or fewer in length.")
        fields = e.get("fields") or []
        if len(fields) > 25:
            bad([*p, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            name, value = str(f.get("name") or ""), str(f.get("value") or "")
            total += len(name) + len(value)
            if not name or len(name) > 256:
                bad(
                    [*p, "fields", str(j), "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 256 in length.",
                )
            if not value or len(value) > 1024:
                bad(
                    [*p, "fields", str(j), "value"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 1024 in length.",
                )
        footer = str((e.get("footer") or {}).get("text") or "")
        total += len(footer)
        if len(footer) > 2048:
            bad([*p, "footer", "text"], "BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length.")
        if total > 6000:
            bad([*p], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        color = e.get("color")
        if color is not None and not (isinstance(color, int) and 0 <= color <= 0xFFFFFF):
            bad([*p, "color"], "NUMBER_TYPE_MAX", "int value should be <= 16777215.")
        img = str((e.get("image") or {}).get("url") or "")
        if img.startswith("attachment://") and img.removeprefix("attachment://") not in files:
            bad([*p, "image", "url"], "URL_TYPE_INVALID_URL", "Not a well formed URL.")
    return err


async def _serve(port: int, hook: str, token: str) -> None:
    fake = await FakeDiscord(bucket_limit=5, bucket_window=2.0).start(port)
    url = fake.add_webhook(hook, token)

    async def show(p: Posted) -> None:
        title = p.embeds[0].get("title") if p.embeds else None
        print(
            json.dumps(
                {
                    "webhook": p.webhook,
                    "id": p.id,
                    "title": title,
                    "content": p.content[:200],
                    "files": {k: len(v) for k, v in p.files.items()},
                }
            ),
            flush=True,
        )

    fake.after_accept = show
    print(f"fake Discord webhook at {url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8082)
    ap.add_argument("--hook", default="1200000000000000001")
    ap.add_argument("--token", default="fake-webhook-token-0123456789")
    a = ap.parse_args()
    asyncio.run(_serve(a.port, a.hook, a.token))
