"""Keyless public streams through ccxt.pro (`watchTicker` / `watchTrades`).

One exchange instance per connection: when a session ends (error, server close, watchdog),
the instance is closed and the next session builds a fresh one, so a silently dead socket is
really replaced. Markets are loaded once over REST and reused by later sessions.

Endpoints: `urls` in the feed's config is deep-merged into the exchange's ``urls`` (e.g. for
OKX ``{api = {ws = "wss://ws.okx.com:8443/ws/v5", rest = "https://www.okx.com"}}``), so a
feed can point at a testnet, a mirror or a local fake server.

Refused locations: Binance answers ``load_markets`` with HTTP 451 and ``{"code": 0, "msg":
"Service unavailable from a restricted location according to 'b. Eligibility' ..."}`` from
the US and some clouds (ccxt issues #16044, #15872, #19167); ccxt maps 451 and 403 to
``ExchangeNotAvailable`` with the status in the message (``Exchange.httpExceptions``, read
against ccxt 4.5). Such an error is a `SourceUnavailable` here: reported as "unavailable
from this location", retried only every ``feeds.unavailable_retry``.

What is used of ccxt (tested range ``ccxt>=4.4,<5``, pinned in pyproject.toml): the public
unified API (``ccxt.pro.<id>(config)``, ``urls``/``options``, ``load_markets``,
``set_markets``, ``markets``/``currencies``, ``watch_ticker``/``watch_trades``, ``close``,
the ``ccxt.BaseError`` hierarchy), and, for the bad-frame guard below, two internals of its
websocket layer: ``Exchange.client(url)`` (builds or returns the connection for a URL) and
``Client.handle_text_or_binary_message(data)`` (decodes one frame and dispatches it). The
guard is optional: when ccxt no longer has them the feed runs unguarded and logs a warning,
and tests/test_connector_ccxt_api.py fails loudly so the change is seen before a release.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
from typing import Any

from connectors.base import (
    FeedContext,
    FeedError,
    FeedSetupError,
    SourceUnavailable,
    StreamFeed,
    location_status,
)
from connectors.config import CcxtFeedConfig

log = logging.getLogger(__name__)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _ws_client_class() -> type | None:
    """ccxt's websocket Client class when it still has the method the guard wraps."""
    try:
        from ccxt.async_support.base.ws.client import Client
    except ImportError:
        return None
    return Client if callable(getattr(Client, "handle_text_or_binary_message", None)) else None


def _ccxt_msg(e: Exception) -> str:
    """The exchange's own message of a ccxt error ('msg' of a JSON body), else the text."""
    text = str(e)
    i = text.find('"msg"')
    if i >= 0:
        return text[i + 5 :].lstrip(': "').split('"', 1)[0]
    return text[-160:]


class CcxtFeed(StreamFeed[CcxtFeedConfig]):
    kind = "ccxt"

    def __init__(self, name: str, cfg: CcxtFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self._markets: Any = None
        self._currencies: Any = None

    def make_exchange(self) -> Any:
        import ccxt.pro as ccxtpro  # heavy import, only when a ccxt feed runs

        cls = getattr(ccxtpro, self.cfg.exchange, None)
        if cls is None:
            raise FeedSetupError(
                f"feed {self.name}: ccxt.pro has no exchange {self.cfg.exchange!r} "
                "(see ccxt.pro.exchanges)"
            )
        ex = cls({"enableRateLimit": True, "timeout": int(self.cfg.timeout * 1000)})
        if self.cfg.urls:
            ex.urls = deep_merge(ex.urls, self.cfg.urls)
        if self.cfg.options:
            ex.options = deep_merge(ex.options, self.cfg.options)
        self._guard(ex)
        return ex

    def _guard(self, ex: Any) -> None:
        """Count every frame, and keep one bad frame from killing ccxt's receive loop.

        ccxt decodes and parses a frame inside an event-loop callback; an exception there
        (truncated JSON, or a price of 'NaN' that its Precise arithmetic rejects) ends its
        receive loop and leaves the socket open and silent. Caught here, per client, the frame
        is counted as malformed and dropped, and the stream goes on.
        """
        original_client = getattr(ex, "client", None)
        client_cls = _ws_client_class()
        if not callable(original_client) or client_cls is None:
            log.warning(
                "feed %s: this ccxt (%s) has no Exchange.client / Client."
                "handle_text_or_binary_message; running without the bad-frame guard",
                self.name,
                getattr(ex, "version", "?"),
            )
            return
        health = self.health
        clock = self.clock
        drop = self.validator.drop

        def client(url: str) -> Any:
            c = original_client(url)
            if getattr(c, "_stressbot_guarded", False):
                return c
            original = getattr(c, "handle_text_or_binary_message", None)
            if not callable(original):
                return c

            def handle_text_or_binary_message(data: Any) -> None:
                health.msgs += 1
                health.last_msg_wall = clock()
                try:
                    original(data)
                except Exception as e:  # any parse failure is a bad frame
                    drop("malformed", f"{type(e).__name__}: {e}; frame {str(data)[:100]}")

            c.handle_text_or_binary_message = handle_text_or_binary_message
            c._stressbot_guarded = True
            return c

        ex.client = client

    async def session(self) -> None:
        import ccxt

        ex = self.make_exchange()
        try:
            try:
                if self._markets is None:
                    await asyncio.wait_for(ex.load_markets(), self.cfg.timeout)
                    self._markets, self._currencies = ex.markets, ex.currencies
                else:
                    ex.set_markets(self._markets, self._currencies)
                missing = [s for s in self.symbols if s not in ex.markets]
                if missing:
                    raise FeedSetupError(
                        f"feed {self.name}: {self.cfg.exchange} has no market {missing}"
                    )
                self.connected()
                watchers = [
                    asyncio.create_task(self._watch(ex, sym, canonical))
                    for sym, canonical in self.symbols.items()
                ]
                try:
                    done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_EXCEPTION)
                finally:
                    for w in watchers:
                        w.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
                for d in done:
                    exc = d.exception()
                    if exc is not None:
                        raise exc
            except ccxt.BadSymbol as e:
                raise FeedSetupError(f"{type(e).__name__}: {e}"[:300]) from None
            except ccxt.ExchangeNotAvailable as e:
                status = location_status(str(e))
                if status is not None:
                    raise SourceUnavailable(self.cfg.exchange, status, _ccxt_msg(e)) from None
                raise FeedError(f"{type(e).__name__}: {e}"[:300]) from None
            except ccxt.BaseError as e:
                raise FeedError(f"{type(e).__name__}: {e}"[:300]) from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ex.close(), 5.0)

    async def _watch(self, ex: Any, symbol: str, canonical: str) -> None:
        clock = self.clock
        trades = self.cfg.method == "trades"
        mid = self.cfg.price == "mid"
        while True:
            if trades:
                batch = await ex.watch_trades(symbol)
                now = clock()
                for tr in batch:
                    self._emit_one(canonical, tr.get("timestamp"), tr.get("price"), now)
                continue
            t = await ex.watch_ticker(symbol)
            now = clock()
            if mid:
                bid, ask = t.get("bid"), t.get("ask")
                value = None if bid is None or ask is None else (bid + ask) / 2
            else:
                value = t.get("last")
                if value is None:
                    value = t.get("close")
            self._emit_one(canonical, t.get("timestamp"), value, now)

    def _emit_one(self, canonical: str, ts_ms: Any, value: Any, now: float) -> None:
        if value is None:
            self.validator.drop("missing_field", f"{canonical}: no price")
            return
        try:
            v = float(value)
            ts = now if ts_ms is None else float(ts_ms) / 1000.0
        except (TypeError, ValueError):
            self.validator.drop("malformed", f"{canonical}: price {value!r} at {ts_ms!r}")
            return
        if math.isnan(ts):
            ts = now
        self.emit(canonical, ts, v, now)
