"""Local fake market-data servers on 127.0.0.1 that speak each source's real protocol.

They are fed with the real recordings in ../shared/fixtures (read in place, never copied).
Where a recording lacks a pair (few BTC frames were recorded), frames are built from a
recorded frame of the same channel: same keys, same order, same number formats, only the
pair/instrument, prices and times changed.

Every server can misbehave on cue, per connection: close abruptly after N frames, go silent
with the socket open, inject malformed frames; HTTP servers answer scripted status codes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve

from bot.core.models import Tick
from bot.store.redis_store import Store
from connectors.config import FeedsConfig
from connectors.supervisor import FeedSupervisor
from tests.conftest import shared_path

# ---- recordings ----------------------------------------------------------------------------


@dataclass
class Recording:
    """A cryptofeed raw-data recording: URL, frames the client sent, frames it received."""

    url: str
    sent: list[str]
    received: list[str]

    def received_json(self) -> list[Any]:
        return [orjson.loads(r) for r in self.received]


def read_recording(path: Path) -> Recording:
    url = ""
    sent: list[str] = []
    received: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if " <-> " in line:
            url = url or line.split(" <-> ", 1)[0]
        elif " <- " in line:
            sent.append(line.split(": ", 1)[1])
        else:
            received.append(line.split(": ", 1)[1])
    return Recording(url, sent, received)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- behaviour scripts -----------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the server does on one connection (or one HTTP streaming response)."""

    close_after: int | None = None  # abort the TCP connection after this many data frames
    silent_after: int | None = None  # then send nothing more, keep the socket open
    inject: dict[int, str] = field(default_factory=dict)  # before data frame i, send this raw
    interval: float = 0.0  # pause between data frames
    loop: bool = False  # start over at the end of the frames (with fresh times)


class Script:
    """Behaviours for successive connections; the last one repeats."""

    def __init__(self, *behaviours: Behaviour) -> None:
        self.behaviours = list(behaviours) or [Behaviour()]
        self.connections = 0

    def next(self) -> Behaviour:
        i = min(self.connections, len(self.behaviours) - 1)
        self.connections += 1
        return self.behaviours[i]


# ---- websocket servers -----------------------------------------------------------------------


class FakeWsServer:
    """A websocket server on 127.0.0.1; `handler` speaks one exchange's protocol."""

    def __init__(
        self, handler: Callable[[ServerConnection], Awaitable[None]], port: int | None = None
    ) -> None:
        self._handler = handler
        self.port = port or free_port()
        self._server: Server | None = None
        self.connections: list[ServerConnection] = []
        # (status, body): refuse the opening handshake with this HTTP answer (e.g. 451)
        self.reject: tuple[int, str] | None = None
        self.rejected = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _serve(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(Exception):
            await self._handler(ws)

    def _process_request(self, conn: ServerConnection, request: Any) -> Any:
        if self.reject is None:
            return None
        self.rejected += 1
        status, body = self.reject
        return conn.respond(status, body)

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            self.port,
            compression=None,
            ping_interval=None,
            process_request=self._process_request,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for ws in self.connections:
                if ws.transport is not None:
                    ws.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> FakeWsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _play(
    ws: ServerConnection, b: Behaviour, frames: Callable[[int], str | None], sent: list[str]
) -> None:
    """Send data frames per behaviour `b`; frames(i) gives frame i (None: the end)."""
    i = 0
    n = 0
    while True:
        if b.close_after is not None and n >= b.close_after:
            await asyncio.sleep(0.02)  # let what was sent reach the client
            assert ws.transport is not None
            ws.transport.abort()  # abrupt: no close frame
            return
        if b.silent_after is not None and n >= b.silent_after:
            await ws.wait_closed()
            return
        if n in b.inject:
            await ws.send(b.inject[n])
        frame = frames(i)
        if frame is None:
            if not b.loop or i == 0:
                await ws.wait_closed()
                return
            i = 0
            continue
        await ws.send(frame)
        sent.append(frame)
        i += 1
        n += 1
        if b.interval:
            await asyncio.sleep(b.interval)
        elif n % 200 == 0:
            await asyncio.sleep(0)


# ---- Kraken v1 -------------------------------------------------------------------------------


def kraken_ticker_template(rec: Recording) -> dict[str, Any]:
    """The recorded XBT/CHF ticker payload (a/b/c/v/p/t/l/h/o)."""
    for m in rec.received_json():
        if isinstance(m, list) and m[-2] == "ticker" and m[-1] == "XBT/CHF":
            return dict(m[1])
    raise AssertionError("recording has no XBT/CHF ticker")


def kraken_ticker_frame(
    template: dict[str, Any], channel_id: int, pair: str, last: float, spread: float = 1.0
) -> str:
    p = copy.deepcopy(template)
    p["c"][0] = f"{last:.5f}"
    p["a"][0] = f"{last + spread / 2:.5f}"
    p["b"][0] = f"{last - spread / 2:.5f}"
    return orjson.dumps([channel_id, p, "ticker", pair]).decode()


def kraken_trade_payloads(rec: Recording) -> list[list[list[str]]]:
    """The recorded trade payloads (lists of [price, volume, time, side, type, misc])."""
    return [m[1] for m in rec.received_json() if isinstance(m, list) and m[-2] == "trade"]


class FakeKraken:
    """Kraken v1 public websocket: subscribe, systemStatus, subscriptionStatus, data arrays."""

    def __init__(
        self,
        rec: Recording,
        frames: Callable[[str, int, int], str | None],
        script: Script | None = None,
        port: int | None = None,
    ) -> None:
        self.rec = rec
        self.frames = frames  # (pair, channel id, i) -> frame i, or None at the end
        self.script = script or Script()
        self.subscriptions: list[dict[str, Any]] = []
        self.sent: list[str] = []
        self.server = FakeWsServer(self._handle, port)
        status = next(
            m
            for m in rec.received_json()
            if isinstance(m, dict) and m.get("event") == "systemStatus"
        )
        self.system_status = orjson.dumps(status).decode()

    @property
    def url(self) -> str:
        return self.server.url

    async def _handle(self, ws: ServerConnection) -> None:
        b = self.script.next()
        sub = orjson.loads(await asyncio.wait_for(ws.recv(), 5.0))
        self.subscriptions.append(sub)
        await ws.send(self.system_status)
        name = sub["subscription"]["name"]
        pair = sub["pair"][0]
        channel_id = 468  # the recorded XBT/CHF ticker channel id
        for p in sub["pair"]:
            await ws.send(
                orjson.dumps(
                    {
                        "channelID": channel_id,
                        "channelName": name,
                        "event": "subscriptionStatus",
                        "pair": p,
                        "status": "subscribed",
                        "subscription": {"name": name},
                    }
                ).decode()
            )
        await _play(ws, b, lambda i: self.frames(pair, channel_id, i), self.sent)

    async def __aenter__(self) -> FakeKraken:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


# ---- OKX v5 (for ccxt.pro) -------------------------------------------------------------------


def okx_ticker_templates(rec: Recording, inst_id: str = "BTC-USDT") -> list[dict[str, Any]]:
    return [
        m
        for m in rec.received_json()
        if isinstance(m, dict)
        and m.get("arg", {}).get("channel") == "tickers"
        and m["arg"].get("instId") == inst_id
        and "data" in m
    ]


def okx_instrument(inst_id: str = "BTC-USDT") -> dict[str, Any]:
    """A spot instrument as OKX's REST GET /api/v5/public/instruments lists it."""
    base, quote = inst_id.split("-")
    return {
        "alias": "",
        "baseCcy": base,
        "category": "1",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "instFamily": "",
        "instId": inst_id,
        "instType": "SPOT",
        "lever": "10",
        "listTime": "1606468572000",
        "lotSz": "0.00000001",
        "maxIcebergSz": "",
        "maxLmtSz": "9999999999",
        "maxMktSz": "1000000",
        "maxStopSz": "1000000",
        "maxTriggerSz": "",
        "maxTwapSz": "",
        "minSz": "0.00001",
        "optType": "",
        "quoteCcy": quote,
        "settleCcy": "",
        "state": "live",
        "stk": "",
        "tickSz": "0.1",
        "uly": "",
    }


class FakeOkx:
    """OKX v5: REST instruments for load_markets, public websocket tickers with text ping."""

    def __init__(
        self,
        templates: list[dict[str, Any]],
        script: Script | None = None,
        restamp: bool = True,
        price: Callable[[int], float] | None = None,
    ) -> None:
        self.templates = templates
        self.script = script or Script()
        self.restamp = restamp
        self.price = price
        self.sent: list[str] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.ws = FakeWsServer(self._handle)
        self.http = FakeHttp()
        self.http.route("/api/v5/public/instruments", self._instruments)

    @property
    def ws_url(self) -> str:
        return f"{self.ws.url}/ws/v5"

    async def _instruments(self, request: web.Request) -> web.Response:
        ids = {a["instId"] for t in self.templates for a in [t["arg"]]}
        body = {"code": "0", "data": [okx_instrument(i) for i in sorted(ids)], "msg": ""}
        return web.json_response(body)

    def frame(self, i: int) -> str | None:
        if i >= len(self.templates) and self.price is None:
            return None
        m = copy.deepcopy(self.templates[i % len(self.templates)])
        d = m["data"][0]
        if self.restamp:
            d["ts"] = str(int(time.time() * 1000))
        if self.price is not None:
            d["last"] = f"{self.price(i):.1f}"
        return orjson.dumps(m).decode()

    async def _handle(self, ws: ServerConnection) -> None:
        b = self.script.next()
        play: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                if raw == "ping":
                    await ws.send("pong")
                    continue
                msg = orjson.loads(raw)
                if msg.get("op") == "subscribe":
                    self.subscriptions.append(msg)
                    for arg in msg["args"]:
                        await ws.send(orjson.dumps({"event": "subscribe", "arg": arg}).decode())
                    if play is None:
                        play = asyncio.create_task(_play(ws, b, self.frame, self.sent))
        finally:
            if play is not None:
                play.cancel()

    async def __aenter__(self) -> FakeOkx:
        await self.ws.start()
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.stop()
        await self.http.stop()


# ---- HTTP ------------------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeHttp:
    """An aiohttp server on 127.0.0.1 with per-path handlers and a queue of forced failures."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.app = web.Application()
        self.requests: list[web.Request] = []
        self.request_times: list[float] = []  # time.monotonic() of each request
        # next responses: (status, headers, body, content type)
        self.failures: list[tuple[int, dict[str, str], str | None, str]] = []
        self.unlogged: tuple[str, ...] = ()  # path prefixes kept out of `requests`
        self.other_requests: list[web.Request] = []  # ... and logged here instead
        self._routes: dict[str, Handler] = {}
        self._runner: web.AppRunner | None = None
        self.app.router.add_route("GET", "/{tail:.*}", self._dispatch)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def fail(
        self,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        content_type: str = "text/plain",
    ) -> None:
        """The next `times` requests get `status` (with `body`, default "error STATUS")."""
        self.failures.extend([(status, headers or {}, body, content_type)] * times)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.unlogged and request.path.startswith(self.unlogged):
            self.other_requests.append(request)
        else:
            self.requests.append(request)
            self.request_times.append(time.monotonic())
        if self.failures:
            status, headers, body, ctype = self.failures.pop(0)
            text = f"error {status}" if body is None else body
            return web.Response(status=status, headers=headers, text=text, content_type=ctype)
        handler = self._routes.get(request.path)
        if handler is None:
            for prefix, h in self._routes.items():
                if prefix.endswith("*") and request.path.startswith(prefix[:-1]):
                    handler = h
                    break
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=0.5, access_log=None
        )  # the server side of a request
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeHttp:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def static_body(
    body: bytes, content_type: str, etag: str | None = None, last_modified: str | None = None
) -> Handler:
    """A handler serving `body`, honouring If-None-Match / If-Modified-Since with 304."""

    async def handler(request: web.Request) -> web.Response:
        headers: dict[str, str] = {}
        if etag:
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers=headers)
        if last_modified:
            headers["Last-Modified"] = last_modified
            if request.headers.get("If-Modified-Since") == last_modified:
                return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)

    return handler


# ---- running the supervisor in tests ---------------------------------------------------------


class WatchedStore(Store):
    """The real store (real Redis), remembering the sequence of states written per feed."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.redis, store.prefix, store.tick_maxlen)
        self.states: dict[str, list[str]] = {}

    async def set_feed_status(self, feed: str, status: dict[str, Any]) -> None:
        seq = self.states.setdefault(feed, [])
        if not seq or seq[-1] != status["state"]:
            seq.append(status["state"])
        await super().set_feed_status(feed, status)


def feeds_config(sources: dict[str, dict[str, Any]], **extra: Any) -> FeedsConfig:
    """A [feeds] config with test-speed timings (watchdog, backoff, status)."""
    data: dict[str, Any] = {
        "flush_interval": 0.002,
        "status_interval": 0.05,
        "stale_after": 0.4,
        "backoff": {"initial": 0.05, "max": 0.2, "jitter": 0.5, "reset_after": 0.5},
        "sources": sources,
    }
    data.update(extra)
    return FeedsConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running(sup: FeedSupervisor) -> AsyncIterator[FeedSupervisor]:
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        yield sup
    finally:
        stop.set()
        await asyncio.wait_for(task, 10.0)


async def wait_until(
    pred: Callable[[], Awaitable[bool] | bool], within: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while True:
        r = pred()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


async def redis_ticks(store: Store, symbol: str | None = None) -> list[Tick]:
    out = [t for _, t in await store.read_ticks("0-0", count=1_000_000)]
    return [t for t in out if symbol is None or t.symbol == symbol]


def is_subsequence(wanted: Sequence[object], seq: Sequence[object]) -> bool:
    """`wanted` appears in `seq` in order (other items may come between)."""
    it = iter(seq)
    return all(any(x == w for x in it) for w in wanted)


# ---- recorded HTTP bodies ----------------------------------------------------------------------


@dataclass
class CassetteResponse:
    """The response of a VCR.py cassette: status, headers and the body bytes as sent."""

    status: int
    headers: dict[str, str]
    body: bytes


def read_vcr_cassette(path: Path) -> CassetteResponse:
    """Read the first response of a VCR.py cassette (only the parts a fake server needs)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    body_b64: list[str] = []
    headers: dict[str, str] = {}
    status = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "string: !!binary |":
            i += 1
            while i < len(lines) and lines[i].startswith("        "):
                body_b64.append(lines[i].strip())
                i += 1
            continue
        if line == "    headers:" and body_b64:
            i += 1
            while i < len(lines) and lines[i].startswith("      "):
                name = lines[i].strip().rstrip(":")
                value = lines[i + 1].strip().removeprefix("- ").strip("'")
                headers[name] = value
                i += 2
            continue
        if line.strip().startswith("code:"):
            status = int(line.split(":", 1)[1])
        i += 1
    return CassetteResponse(status, headers, base64.b64decode("".join(body_b64)))


ATOM_HEAD = (
    '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'
    '<feed xml:base="https://home.treasury.gov/resource-center/data-chart-center/'
    'interest-rates/pages/xml" xmlns="http://www.w3.org/2005/Atom" '
    'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
    'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">\n'
    '  <title type="text">DailyTreasuryYieldCurveRateData</title>\n'
    "  <id>https://home.treasury.gov/resource-center/data-chart-center/interest-rates/"
    "pages/xml?data=daily_treasury_yield_curve</id>\n"
    "  <updated>2022-02-02T00:00:00Z</updated>\n"
    '  <link rel="self" title="DailyTreasuryYieldCurveRateData" '
    'href="DailyTreasuryYieldCurveRateData" />\n'
)


def treasury_atom(properties: list[str]) -> bytes:
    """Wrap recorded <m:properties> fragments in the feed's Atom/OData envelope."""
    entries = []
    for i, p in enumerate(properties):
        entries.append(
            "  <entry>\n"
            f"    <id>DailyTreasuryYieldCurveRateData({8030 + i})</id>\n"
            '    <title type="text"></title>\n'
            "    <updated>2022-02-02T00:00:00Z</updated>\n"
            "    <author>\n      <name />\n    </author>\n"
            '    <link rel="edit" title="DailyTreasuryYieldCurveRateDatum" '
            f'href="DailyTreasuryYieldCurveRateData({8030 + i})" />\n'
            '    <category term="TreasuryDataWarehouseModel.DailyTreasuryYieldCurveRateDatum" '
            'scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme" />\n'
            '    <content type="application/xml">\n'
            f"{p}\n"
            "    </content>\n"
            "  </entry>\n"
        )
    return (ATOM_HEAD + "".join(entries) + "</feed>\n").encode()


# ---- OANDA v20 pricing stream ------------------------------------------------------------------


def oanda_time(ts: float) -> str:
    """OANDA's RFC 3339 with nanoseconds, e.g. 2016-10-27T08:38:45.664613867Z."""
    whole = int(ts)
    nanos = min(round((ts - whole) * 1e9), 999_999_999)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{base}.{nanos:09d}Z"


#: The credentials the OANDA tests put in the environment (the token must never be logged).
OANDA_TOKEN = "oanda-t0ken-never-in-logs"
OANDA_ACCOUNT = "101-004-1234567-001"


def recorded_oanda_lines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The recorded pricing stream, with the test credentials set in the environment.

    EUR_JPY is not a series stressbot uses: its recorded lines stand in for USD_JPY (same
    shape, renamed instrument)."""
    monkeypatch.setenv("OANDA_API_TOKEN", OANDA_TOKEN)
    monkeypatch.setenv("OANDA_ACCOUNT_ID", OANDA_ACCOUNT)
    path = shared_path("fixtures", "oanda", "pricing_stream_EUR_USD_EUR_JPY.jsonl")
    recorded = [orjson.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [
        {**m, "instrument": "USD_JPY"} if m.get("instrument") == "EUR_JPY" else m for m in recorded
    ]


def oanda_feed(url: str, symbols: dict[str, str], **kw: Any) -> dict[str, Any]:
    """An OANDA feed's config for a fake at `url`; "always": the tests must not depend on
    whether today's FX market is open."""
    return {
        "kind": "oanda",
        "url": url,
        "schedule": "always",
        "max_past": 0,
        "heartbeat_timeout": 1.0,
        "symbols": symbols,
        **kw,
    }


#: OANDA's answer to a pricing or instruments request naming an instrument the account lacks.
OANDA_INVALID_INSTRUMENTS = {"errorMessage": "Invalid value specified for 'instruments'"}


def oanda_instrument(name: str) -> dict[str, Any]:
    """One instrument as GET /v3/accounts/{id}/instruments lists it (the field set of the
    example in hootnot/oanda-api-v20 endpoints/responses/accounts.py)."""
    cfd = not name.replace("_", "").isalpha() or name.endswith(("500_USD", "100_USD"))
    metal = name.startswith(("XAU", "XAG"))
    return {
        "minimumTradeSize": "1",
        "displayName": name.replace("_", "/") if not cfd else name,
        "name": name,
        "displayPrecision": 1 if cfd else 5,
        "type": "CFD" if cfd else "METAL" if metal else "CURRENCY",
        "minimumTrailingStopDistance": "5.0" if cfd else "0.00050",
        "marginRate": "0.05",
        "maximumOrderUnits": "3000" if cfd else "100000000",
        "tradeUnitsPrecision": 0,
        "pipLocation": 0 if cfd else -4,
        "maximumPositionSize": "0",
        "maximumTrailingStopDistance": "10000.0" if cfd else "1.00000",
    }


class FakeOanda:
    """GET /v3/accounts/{id}/pricing/stream: chunked NDJSON PRICE lines and HEARTBEATs, and
    GET /v3/accounts/{id}/instruments (the account's instruments; those in `unavailable` are
    refused with 400 there and make a pricing request that names them fail with 400, as
    OANDA does). Instruments lookups are logged in `http.other_requests`."""

    def __init__(
        self,
        lines: list[dict[str, Any]],
        token: str,
        account: str,
        script: Script | None = None,
        heartbeat: float = 0.05,
        restamp: bool = True,
        port: int | None = None,
        unavailable: Sequence[str] = (),
    ) -> None:
        self.lines = lines
        self.unavailable = set(unavailable)
        self.token = token
        self.account = account
        self.script = script or Script()
        self.heartbeat = heartbeat
        self.restamp = restamp
        self.sent: list[dict[str, Any]] = []
        self.http = FakeHttp(port)
        self.http.route(f"/v3/accounts/{account}/pricing/stream", self._stream)
        self.http.route(f"/v3/accounts/{account}/instruments", self._instruments)
        self.http.unlogged = (f"/v3/accounts/{account}/instruments",)

    @property
    def url(self) -> str:
        return self.http.url

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _instruments(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"errorMessage": "Insufficient authorization to perform request."}, status=401
            )
        asked = [i for i in request.query.get("instruments", "").split(",") if i]
        if set(asked) & self.unavailable:
            return web.json_response(OANDA_INVALID_INSTRUMENTS, status=400)
        names = asked or sorted({str(m.get("instrument")) for m in self.lines})
        return web.json_response(
            {"instruments": [oanda_instrument(n) for n in names], "lastTransactionID": "2124"}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response(
                {"errorMessage": "Insufficient authorization to perform request."}, status=401
            )
        wanted = set(request.query.get("instruments", "").split(","))
        if wanted & self.unavailable:
            return web.json_response(OANDA_INVALID_INSTRUMENTS, status=400)
        b = self.script.next()
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        prices = [
            m for m in self.lines if m.get("type") == "PRICE" and m.get("instrument") in wanted
        ]
        n = 0
        i = 0
        last_hb = time.monotonic()
        while True:
            if b.close_after is not None and n >= b.close_after:
                await asyncio.sleep(0.02)
                assert request.transport is not None
                request.transport.abort()
                return resp
            if b.silent_after is not None and n >= b.silent_after:
                await asyncio.sleep(3600)
            if n in b.inject:
                await resp.write(b.inject[n].encode() + b"\n")
            if i >= len(prices):
                if not b.loop:
                    # quiet market: heartbeats only
                    while True:
                        await resp.write(
                            orjson.dumps({"type": "HEARTBEAT", "time": oanda_time(time.time())})
                            + b"\n"
                        )
                        await asyncio.sleep(self.heartbeat)
                i = 0
            m = copy.deepcopy(prices[i])
            if self.restamp:
                m["time"] = oanda_time(time.time())
            await resp.write(orjson.dumps(m) + b"\n")
            self.sent.append(m)
            i += 1
            n += 1
            if time.monotonic() - last_hb >= self.heartbeat:
                await resp.write(
                    orjson.dumps({"type": "HEARTBEAT", "time": oanda_time(time.time())}) + b"\n"
                )
                last_hb = time.monotonic()
            await asyncio.sleep(b.interval)

    async def __aenter__(self) -> FakeOanda:
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.stop()
