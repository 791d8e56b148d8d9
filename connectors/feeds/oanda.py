"""OANDA v20 pricing stream: professional FX and metals quotes over HTTP.

Why OANDA: one stream covers every major FX pair and spot gold/silver (XAU_USD, XAG_USD),
free practice accounts exist, and the stream is plain HTTP chunked NDJSON with a heartbeat
every 5 s, so a dead connection is told from a quiet market.

``GET {url}/v3/accounts/{account}/pricing/stream?instruments=EUR_USD,XAU_USD`` with
``Authorization: Bearer <token>`` streams one JSON object per line:
``{"type":"PRICE","instrument":"EUR_USD","time":"2016-10-27T08:38:45.664613867Z",
"bids":[{"price":"1.09177",...}],"asks":[{"price":"1.09188",...}],"status":"tradeable",...}``
and ``{"type":"HEARTBEAT","time":"..."}``. The tick is the mid of the best bid and ask,
stamped with OANDA's time. The token comes from the environment and is never logged.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from connectors.base import FeedError, FeedSetupError, StreamFeed
from connectors.config import OandaFeedConfig


def parse_oanda_time(text: str) -> float:
    """RFC 3339 with nanoseconds ('2016-10-27T08:38:45.664613867Z') to epoch seconds."""
    if text.endswith("Z"):
        text = text[:-1]
    head, _, frac = text.partition(".")
    ts = datetime.fromisoformat(head + "+00:00").timestamp()
    if frac:
        ts += float("0." + frac)
    return ts


class OandaFeed(StreamFeed[OandaFeedConfig]):
    kind = "oanda"

    def _credentials(self) -> tuple[str, str]:
        token = os.environ.get(self.cfg.token_env, "")
        account = os.environ.get(self.cfg.account_env, "")
        missing = [
            n for n, v in ((self.cfg.token_env, token), (self.cfg.account_env, account)) if not v
        ]
        if missing:
            raise FeedSetupError(
                f"{' and '.join(missing)} not set: create an OANDA (practice) account, "
                "generate an API token and export it"
            )
        return token, account

    async def session(self) -> None:
        token, account = self._credentials()
        url = f"{self.cfg.url.rstrip('/')}/v3/accounts/{account}/pricing/stream"
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.cfg.timeout,
            sock_connect=self.cfg.timeout,
            sock_read=self.cfg.heartbeat_timeout,
        )
        headers = {"Authorization": f"Bearer {token}", "Accept-Datetime-Format": "RFC3339"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(
                    url, params={"instruments": ",".join(self.symbols)}, headers=headers
                ) as resp,
            ):
                if resp.status != 200:
                    text = (await resp.text(errors="replace"))[:200].replace(token, "***")
                    raise FeedError(f"HTTP {resp.status} from the pricing stream: {text}")
                self.connected()
                clock = self.clock
                async for line in resp.content:
                    if line.strip():
                        self.on_line(line, clock())
                raise FeedError("pricing stream ended by the server")
        except TimeoutError:
            raise FeedError(f"no data or heartbeat for {self.cfg.heartbeat_timeout:g}s") from None
        except aiohttp.ClientError as e:
            raise FeedError(f"{type(e).__name__}: {e}".replace(token, "***")[:300]) from None

    def on_line(self, line: bytes, now: float) -> None:
        h = self.health
        h.msgs += 1
        h.last_msg_wall = now
        try:
            msg: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.validator.drop("malformed", f"not JSON: {line[:80]!r}")
            return
        if type(msg) is not dict:
            self.validator.drop("malformed", f"not an object: {line[:80]!r}")
            return
        kind = msg.get("type")
        if kind == "HEARTBEAT":
            return
        if kind != "PRICE":
            self.validator.drop("malformed", f"unknown message type {str(kind)[:40]}")
            return
        canonical = self.symbols.get(msg.get("instrument", ""))
        if canonical is None:
            self.validator.drop("malformed", f"unsubscribed instrument {msg.get('instrument')}")
            return
        tradeable = msg.get("tradeable", msg.get("status", "tradeable") == "tradeable")
        if tradeable is False:
            h.dropped["not_tradeable"] += 1  # indicative quote of a halted market: skip
            return
        try:
            bid = float(msg["bids"][0]["price"])
            ask = float(msg["asks"][0]["price"])
            ts = parse_oanda_time(msg["time"])
        except (KeyError, IndexError, TypeError):
            self.validator.drop("missing_field", f"PRICE {str(msg)[:100]}")
            return
        except ValueError:
            self.validator.drop("malformed", f"PRICE {str(msg)[:100]}")
            return
        self.emit(canonical, ts, (bid + ask) * 0.5, now)
