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

Instruments are checked one by one before the first stream: one instrument the account may
not trade (index CFDs such as ``SPX500_USD`` are not offered in some jurisdictions) makes
the whole pricing request fail with HTTP 400 ``{"errorMessage": "Invalid value specified for
'instruments'"}`` (the v20 answer to an invalid instrument; oanda/v20-java-samples issue #5,
hootnot/oandapyV20-examples #21), so every symbol would be down and retried forever.
``GET {api}/v3/accounts/{account}/instruments?instruments=SPX500_USD`` (the account
instruments endpoint, on the REST host ``api-fxpractice.oanda.com`` / ``api-fxtrade``)
answers ``{"instruments": [{"name": "SPX500_USD", "type": "CFD", "displayName": ...}],
"lastTransactionID": "..."}`` for an instrument the account has (the shape of
AccountInstrumentsResponse in OANDA's v20 spec, example in hootnot/oanda-api-v20
``endpoints/responses/accounts.py``); a 400/404, or a list without it, means unavailable.
Unavailable instruments are reported (health ``skipped`` and detail, a warning in the log)
and left out of the stream; the others stream. 401/403 there is a token/account problem.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from connectors.base import FeedContext, FeedError, FeedSetupError, StreamFeed
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


log = logging.getLogger(__name__)


def api_base(cfg: OandaFeedConfig) -> str:
    """The REST host of the account endpoints: `api_url`, else the stream URL's 'api-' twin."""
    if cfg.api_url:
        return cfg.api_url.rstrip("/")
    parts = urlsplit(cfg.url)
    host = parts.netloc
    if host.startswith("stream-"):
        host = "api-" + host.removeprefix("stream-")
    return urlunsplit(parts._replace(netloc=host)).rstrip("/")


class OandaFeed(StreamFeed[OandaFeedConfig]):
    kind = "oanda"

    def __init__(self, name: str, cfg: OandaFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self._validated = not cfg.validate_instruments

    def instruments(self) -> list[str]:
        """The instruments to stream: the configured ones the account may trade."""
        return [v for v in self.symbols if v not in self.skipped]

    async def validate(self, http: aiohttp.ClientSession, token: str, account: str) -> None:
        """Ask the account instruments endpoint about each instrument, one by one."""
        url = f"{api_base(self.cfg)}/v3/accounts/{account}/instruments"
        headers = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout)
        skipped: dict[str, str] = {}
        for name in self.symbols:
            try:
                async with http.get(
                    url, params={"instruments": name}, headers=headers, timeout=timeout
                ) as resp:
                    body = await resp.read()
                    status = resp.status
            except TimeoutError:
                raise FeedError(
                    f"instruments check: no answer within {self.cfg.timeout:g}s"
                ) from None
            text = body[:300].decode("utf-8", "replace").replace(token, "***")
            if status in (401, 403):
                raise FeedError(f"HTTP {status} from the instruments endpoint: {text}")
            if status == 200:
                try:
                    listed = {i.get("name") for i in orjson.loads(body)["instruments"]}
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    raise FeedError(
                        f"instruments check: unexpected answer {text[:100]!r}"
                    ) from None
                if name not in listed:
                    skipped[name] = "not offered to this account"
            elif status in (400, 404):
                skipped[name] = f"not available for this account (HTTP {status}: {_msg(text)})"
            else:
                raise FeedError(f"HTTP {status} from the instruments endpoint: {text[:120]}")
        self.skipped = skipped
        self.health.skipped = dict(skipped)
        self._validated = True
        if skipped:
            names = ", ".join(f"{n} ({self.symbols[n]})" for n in skipped)
            log.warning(
                "feed %s: skipping instruments this OANDA account cannot trade: %s",
                self.name,
                names,
            )
        if not self.instruments():
            raise FeedSetupError(
                f"none of the configured instruments is available for this OANDA account "
                f"({', '.join(self.symbols)}); check the account's jurisdiction and `symbols`"
            )

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
            async with aiohttp.ClientSession(timeout=timeout) as http:
                if not self._validated:
                    await self.validate(http, token, account)
                await self._stream(http, url, headers, token)
        except TimeoutError:
            raise FeedError(f"no data or heartbeat for {self.cfg.heartbeat_timeout:g}s") from None
        except aiohttp.ClientError as e:
            raise FeedError(f"{type(e).__name__}: {e}".replace(token, "***")[:300]) from None

    async def _stream(
        self, http: aiohttp.ClientSession, url: str, headers: dict[str, str], token: str
    ) -> None:
        instruments = self.instruments()
        async with http.get(
            url, params={"instruments": ",".join(instruments)}, headers=headers
        ) as resp:
            if resp.status != 200:
                text = (await resp.text(errors="replace"))[:200].replace(token, "***")
                raise FeedError(f"HTTP {resp.status} from the pricing stream: {text}")
            self.connected()
            if self.skipped:
                self.health.detail = (
                    f"connected; skipped {', '.join(self.skipped)} (not available for this account)"
                )
            clock = self.clock
            async for line in resp.content:
                if line.strip():
                    self.on_line(line, clock())
            raise FeedError("pricing stream ended by the server")

    def on_line(self, line: bytes, now: float) -> None:
        """Handle one line of the stream (public for tests)."""
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


def _msg(text: str) -> str:
    """OANDA's errorMessage of an error body, else the text."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text[:120]
    return str(doc.get("errorMessage", text))[:120] if isinstance(doc, dict) else text[:120]
