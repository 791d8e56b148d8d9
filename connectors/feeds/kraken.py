"""Kraken's native public websocket (v1, ``wss://ws.kraken.com``), without ccxt.

Protocol (as recorded): the client sends
``{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"ticker"}}``; the server
answers ``systemStatus``, one ``subscriptionStatus`` per pair (with its ``channelID``), then
data arrays ``[channelID, payload, "ticker"|"trade", "XBT/USD"]`` and ``{"event":"heartbeat"}``
when quiet. Ticker payloads carry no time (the tick is stamped on arrival); trade payloads are
lists of ``[price, volume, time, side, type, misc]`` stamped by the exchange.

A handshake refused with HTTP 451 or 403 (``websockets.exceptions.InvalidStatus``, whose
``response.status_code`` the new asyncio client sets, websockets >= 13) is a
`SourceUnavailable`: the location is refused, retried only every ``feeds.unavailable_retry``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from connectors.base import FeedContext, FeedError, SourceUnavailable, StreamFeed
from connectors.config import KrakenFeedConfig

log = logging.getLogger(__name__)


class KrakenFeed(StreamFeed[KrakenFeedConfig]):
    kind = "kraken"

    def __init__(self, name: str, cfg: KrakenFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self.mid = cfg.price == "mid"

    def subscribe_message(self) -> bytes:
        return orjson.dumps(
            {
                "event": "subscribe",
                "pair": list(self.symbols),
                "subscription": {"name": self.cfg.channel},
            }
        )

    async def session(self) -> None:
        try:
            await self._session()
        except InvalidStatus as e:
            status = e.response.status_code
            if status in (403, 451):
                body = bytes(e.response.body or b"")[:200].decode("utf-8", "replace")
                raise SourceUnavailable(self.cfg.url, status, body) from None
            raise FeedError(f"handshake refused: HTTP {status}") from None

    async def _session(self) -> None:
        async with connect(
            self.cfg.url,
            open_timeout=self.cfg.timeout,
            close_timeout=2.0,
            ping_interval=20.0,
            ping_timeout=20.0,
            max_size=2**22,
            max_queue=1024,  # frames read ahead of the parser: fewer pauses under bursts
            compression=None,
        ) as ws:
            await ws.send(self.subscribe_message().decode())
            self.connected()
            on_frame = self.on_frame
            clock = self.clock
            try:
                async for raw in ws:
                    on_frame(raw, clock())
            except websockets.ConnectionClosedError as e:
                raise FeedError(f"connection lost: {e}") from None

    def on_frame(self, raw: str | bytes, now: float) -> None:
        """Handle one websocket frame (public for the benchmark and tests)."""
        h = self.health
        h.msgs += 1
        h.last_msg_wall = now
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.validator.drop("malformed", f"not JSON: {raw[:80]!r}")
            return
        if type(msg) is list:
            self._on_data(msg, now)
        elif type(msg) is dict:
            self._on_event(msg)
        else:
            self.validator.drop("malformed", f"unexpected frame: {raw[:80]!r}")

    def _on_event(self, msg: dict[str, Any]) -> None:
        ev = msg.get("event")
        if ev == "heartbeat" or ev == "systemStatus" or ev == "pong":
            return
        if ev == "subscriptionStatus":
            if msg.get("status") == "error":
                self.error(f"subscription refused for {msg.get('pair')}: {msg.get('errorMessage')}")
                log.warning("feed %s: %s", self.name, self.health.detail)
            return
        if ev == "error":
            self.error(f"server error: {msg.get('errorMessage')}")
            return
        self.validator.drop("malformed", f"unknown event {str(msg)[:80]}")

    def _on_data(self, msg: list[Any], now: float) -> None:
        try:
            channel = msg[-2]
            pair = msg[-1]
            payload = msg[1]
        except IndexError:
            self.validator.drop("missing_field", f"short data frame {str(msg)[:80]}")
            return
        canonical = self.symbols.get(pair) if type(pair) is str else None
        if canonical is None:
            self.validator.drop("malformed", f"unsubscribed pair {str(pair)[:40]}")
            return
        try:
            if channel == "ticker":
                if self.mid:
                    value = (float(payload["a"][0]) + float(payload["b"][0])) * 0.5
                else:
                    value = float(payload["c"][0])
                self.emit(canonical, now, value, now)
            elif channel == "trade":
                for trade in payload:
                    self.emit(canonical, float(trade[2]), float(trade[0]), now)
            else:
                self.validator.drop("malformed", f"unknown channel {str(channel)[:40]}")
        except (KeyError, IndexError, TypeError):
            self.validator.drop("missing_field", f"{channel} frame {str(msg)[:80]}")
        except ValueError:
            self.validator.drop("malformed", f"{channel} frame {str(msg)[:80]}")
