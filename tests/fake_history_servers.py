"""Local stand-ins (127.0.0.1, ephemeral ports) for FRED's fredgraph.csv and Kraken's REST API.

Each server records every request (path, query, arrival time on the monotonic clock) and can be
told to answer the next requests with an error (status + headers + body) before serving
normally, to answer every request so (`always`: FRED's 403, a proof-of-work page), or to cut
the next answers short: ``"truncate"`` declares the full Content-Length and closes the
connection half way (the client sees a payload error), ``"short"`` answers 200 with the first
half of the real body (a valid response whose body is cut: a format error).
The other keyless sources are in :mod:`tests.fake_history_sources`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Recorded:
    path: str
    query: dict[str, str]
    at: float  # time.monotonic()


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "<html><body>Service Unavailable</body></html>"
    content_type: str = "text/html"
    cut: str | None = None  # "truncate" | "short": serve the real answer, cut


#: FRED's answer to programmatic clients since about 2026-05-30 (quantmod issue #453)
FRED_403 = Failure(
    403,
    body="<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden"
    "</h1><p>You don't have permission to access this resource.</p></body></html>",
)
#: A 200 interstitial instead of data (Stooq's proof-of-work page, consent walls)
INTERSTITIAL = Failure(
    200,
    body="<!DOCTYPE html><html><head><title>Just a moment...</title></head><body><script>"
    "var pow='0000'</script><noscript>Enable JavaScript to continue</noscript></body></html>",
)


class FakeServer:
    """An aiohttp app on 127.0.0.1:0 that records requests and can fail on demand."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: deque[Failure] = deque()
        self.always: Failure | None = None
        self.url = ""
        self.app = web.Application(middlewares=[self._middleware])
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append(Recorded(request.path, dict(request.query), time.monotonic()))
        f = self.failures.popleft() if self.failures else self.always
        if f is None:
            return await handler(request)
        if f.cut is None:
            return web.Response(
                status=f.status, headers=f.headers, text=f.body, content_type=f.content_type
            )
        real = await handler(request)
        assert isinstance(real, web.Response) and isinstance(real.body, bytes)
        body = real.body
        if f.cut == "short":
            return web.Response(status=200, body=body[: len(body) // 2], headers=real.headers)
        out = web.StreamResponse(status=200)
        out.content_type = real.content_type
        out.content_length = len(body)
        await out.prepare(request)
        await out.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return out

    def fail_next(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        times: int = 1,
        body: str | None = None,
        cut: str | None = None,
    ) -> None:
        for _ in range(times):
            f = Failure(status, dict(headers or {}), cut=cut)
            if body is not None:
                f.body = body
            self.failures.append(f)

    def requests_to(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --------------------------------------------------------------------------- FRED


def synthetic_value(series_id: str, d: date) -> str:
    """A plausible positive value with two decimals, different per series and day."""
    seed = sum(ord(c) for c in series_id)
    return f"{1 + (seed % 50) + (d.toordinal() % 97) / 100:.2f}"


CALENDAR_DAILY = {"IOER", "IORB"}


class FakeFred(FakeServer):
    """``GET /graph/fredgraph.csv?id=&cosd=&coed=`` in FRED's CSV format.

    `series` maps an id to {date: value text} (use ``"."`` or ``""`` for missing values); ids
    not in it get synthetic values on weekdays (every day for IOER/IORB). `old_header` holds
    the ids answered with the older ``DATE,SERIES`` header.
    """

    PATH = "/graph/fredgraph.csv"

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[str, dict[date, str]] = {}
        self.old_header: set[str] = set()
        self.broken: set[str] = set()  # ids answered with 503 every time
        self.raw: dict[str, str] = {}  # ids answered 200 with this body instead of CSV
        self.app.router.add_get(self.PATH, self._csv)

    @property
    def endpoint(self) -> str:
        return self.url + self.PATH

    def _rows(self, sid: str, lo: date, hi: date) -> list[tuple[date, str]]:
        if sid in self.series:
            return sorted((d, v) for d, v in self.series[sid].items() if lo <= d <= hi)
        out = []
        d = lo
        while d <= hi:
            if sid in CALENDAR_DAILY or d.weekday() < 5:
                out.append((d, synthetic_value(sid, d)))
            d += timedelta(days=1)
        return out

    async def _csv(self, request: web.Request) -> web.Response:
        sid = request.query["id"]
        if sid in self.broken:
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body>")
        if sid in self.raw:
            return web.Response(text=self.raw[sid], content_type="text/html")
        lo = date.fromisoformat(request.query["cosd"])
        hi = date.fromisoformat(request.query["coed"])
        first = "DATE" if sid in self.old_header else "observation_date"
        lines = [f"{first},{sid}"] + [f"{d.isoformat()},{v}" for d, v in self._rows(sid, lo, hi)]
        return web.Response(
            text="\n".join(lines) + "\n",
            content_type="text/csv",
            headers={"Content-Disposition": f"attachment; filename={sid}.csv"},
        )


# --------------------------------------------------------------------------- Kraken

# Kraken's /0/public/Assets and /0/public/AssetPairs shapes (values synthetic, fields as served).
KRAKEN_ASSETS: dict[str, Any] = {
    "error": [],
    "result": {
        "XXBT": {
            "aclass": "currency",
            "altname": "XBT",
            "decimals": 10,
            "display_decimals": 5,
            "collateral_value": 1.0,
            "status": "enabled",
        },
        "USDT": {
            "aclass": "currency",
            "altname": "USDT",
            "decimals": 8,
            "display_decimals": 4,
            "collateral_value": 1.0,
            "status": "enabled",
        },
        "ZUSD": {
            "aclass": "currency",
            "altname": "USD",
            "decimals": 4,
            "display_decimals": 2,
            "collateral_value": 1.0,
            "status": "enabled",
        },
    },
}

KRAKEN_ASSET_PAIRS: dict[str, Any] = {
    "error": [],
    "result": {
        "XBTUSDT": {
            "altname": "XBTUSDT",
            "wsname": "XBT/USDT",
            "aclass_base": "currency",
            "base": "XXBT",
            "aclass_quote": "currency",
            "quote": "USDT",
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": 1,
            "lot_decimals": 8,
            "lot_multiplier": 1,
            "leverage_buy": [2, 3],
            "leverage_sell": [2, 3],
            "fees": [[0, 0.4], [10000, 0.35]],
            "fees_maker": [[0, 0.25], [10000, 0.2]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": "0.00005",
            "costmin": "0.5",
            "tick_size": "0.1",
            "status": "online",
        },
    },
}


class FakeKraken(FakeServer):
    """Kraken public REST: Assets, AssetPairs, and OHLC answering a recorded body for its pair."""

    def __init__(self, ohlc_body: dict[str, Any]) -> None:
        super().__init__()
        self.ohlc_body = ohlc_body
        #: when set, (pair, first open, last open, bars per answer) of generated hourly bars
        #: served from `since` (exclusive), so a client has to page through them
        self.generated: tuple[str, int, int, int] | None = None
        #: public trades of every pair: (time s, price, volume), answered from `since` (seconds,
        #: inclusive) at most `trade_page` at a time
        self.trades: list[tuple[float, float, float]] = []
        self.trade_page = 1000
        self.asset_pairs: dict[str, Any] = KRAKEN_ASSET_PAIRS
        self.app.router.add_get("/0/public/Assets", self._assets)
        self.app.router.add_get("/0/public/AssetPairs", self._pairs)
        self.app.router.add_get("/0/public/OHLC", self._ohlc)
        self.app.router.add_get("/0/public/Trades", self._trades)

    @classmethod
    def from_ccxt_static(cls, path: Path) -> FakeKraken:
        """Serve the raw Kraken body of the fetchOHLCV entry of ccxt's static response file."""
        data = json.loads(path.read_text())
        return cls(data["methods"]["fetchOHLCV"][0]["httpResponse"])

    @classmethod
    def paging(cls, pair: str, first_open: int, last_open: int, page_size: int) -> FakeKraken:
        """Hourly bars `first_open`..`last_open` (epoch s), at most `page_size` per answer."""
        srv = cls({"error": [], "result": {pair: [], "last": 0}})
        srv.generated = (pair, first_open, last_open, page_size)
        return srv

    @staticmethod
    def generated_close(open_ts: int) -> float:
        return 1000.0 + (open_ts // 3600) % 500 + 0.5

    def _generated_body(self, since: int) -> dict[str, Any]:
        assert self.generated is not None
        pair, first, last, size = self.generated
        t = first if since < first else (since // 3600 + 1) * 3600  # Kraken: since exclusive
        bars: list[list[Any]] = []
        while t <= last and len(bars) < size:
            c = f"{self.generated_close(t):.1f}"
            bars.append([t, c, c, c, c, c, "1.00000000", 1])
            t += 3600
        return {"error": [], "result": {pair: bars, "last": bars[-1][0] if bars else since}}

    @property
    def pairs(self) -> list[str]:
        return [k for k in self.ohlc_body["result"] if k != "last"]

    async def _assets(self, request: web.Request) -> web.Response:
        return web.json_response(KRAKEN_ASSETS)

    async def _pairs(self, request: web.Request) -> web.Response:
        return web.json_response(self.asset_pairs)

    async def _ohlc(self, request: web.Request) -> web.Response:
        if request.query.get("pair") not in self.pairs:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        if self.generated is not None:
            return web.json_response(self._generated_body(int(request.query.get("since", "0"))))
        return web.json_response(self.ohlc_body)

    async def _trades(self, request: web.Request) -> web.Response:
        pair = request.query.get("pair", "")
        if pair not in self.pairs:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        since = float(request.query.get("since", "0"))
        if since > 1e12:  # nanoseconds
            since /= 1e9
        count = min(int(request.query.get("count", "1000")), self.trade_page)
        rows = [(i, t) for i, t in enumerate(sorted(self.trades)) if t[0] >= since][:count]
        body = [[f"{p:.5f}", f"{v:.8f}", t, "b", "l", "", 1000 + i] for i, (t, p, v) in rows]
        last = str(int(rows[-1][1][0] * 1e9)) if rows else str(int(since * 1e9))
        return web.json_response({"error": [], "result": {pair: body, "last": last}})
