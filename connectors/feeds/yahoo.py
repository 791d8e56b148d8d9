"""Yahoo Finance chart API (keyless JSON): live S&P 500, Nasdaq-100, Nikkei 225, VIX, DXY.

``GET https://query2.finance.yahoo.com/v8/finance/chart/{ticker}?interval=1m&range=1d`` answers
``{"chart": {"result": [{"meta": {"symbol": "^GSPC", "regularMarketPrice": 5431.6,
"regularMarketTime": 1718049600, "exchangeTimezoneName": "America/New_York", ...},
"timestamp": [...], "indicators": {...}}], "error": null}}``; an unknown ticker answers 404
with ``{"chart": {"result": null, "error": {"code": "Not Found", ...}}}``. The feed reads the
quote in ``meta``: ``regularMarketPrice`` stamped at ``regularMarketTime`` (epoch seconds,
the quote's own time), so Yahoo's delay for some exchanges is a lag, never look-ahead, and a
closed market's repeated last price is not a new tick.

Checked with the code search: the meta fields as typed by public clients of the v8 chart
endpoint (TypeScript ``YahooMeta`` / ``Yahoo.Meta`` interfaces with ``regularMarketPrice`` and
``regularMarketTime``); the request itself is the one yfinance makes for prices and needs no
cookie or crumb (see :mod:`connectors.history.yahoo`, which reads the same endpoint's daily
bars for history). It is unofficial: 429 for robot-like clients, outages and format changes
are reported as feed errors (retried with backoff), never a crash, and the combiner falls
back to the next configured source of the symbol (OANDA CFDs when their keys are set).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from connectors.base import PollError
from connectors.config import YahooFeedConfig
from connectors.http_poll import HttpPolledFeed

PARAMS = {"interval": "1m", "range": "1d", "includePrePost": "false"}


def parse_quote(body: bytes) -> tuple[float, float]:
    """(quote time, price) of a chart answer; ValueError naming what is missing."""
    try:
        chart: Any = orjson.loads(body)["chart"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f'expected {{"chart": ...}}, got {body[:80]!r}') from None
    if not isinstance(chart, dict):
        raise ValueError("chart is not an object")
    if chart.get("error"):
        raise ValueError(f"Yahoo says {chart['error']}")
    try:
        meta = chart["result"][0]["meta"]
        ts, price = meta["regularMarketTime"], meta["regularMarketPrice"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("no meta.regularMarketPrice/regularMarketTime in the answer") from None
    if not isinstance(ts, int | float) or not isinstance(price, int | float):
        raise ValueError(f"quote time {ts!r} or price {price!r} is not a number")
    return float(ts), float(price)


class YahooFeed(HttpPolledFeed[YahooFeedConfig]):
    kind = "yahoo"

    async def poll(self) -> int:
        obs: list[tuple[str, float, float]] = []
        failed: list[str] = []
        for ticker, canonical in self.symbols.items():
            url = self.cfg.url.replace("{ticker}", quote(ticker, safe=""))
            try:
                body = await self.get(url, PARAMS)
            except PollError as e:
                failed.append(f"{ticker}: {e}")
                continue
            if body is None:
                continue
            try:
                ts, price = parse_quote(body)
            except ValueError as e:
                self.validator.drop("malformed", f"{ticker}: {e}")
                failed.append(f"{ticker}: malformed answer ({e})")
                continue
            obs.append((canonical, ts, price))
        new = self.emit_new(obs)
        if failed and not obs:
            raise PollError("; ".join(failed)[:300])
        if failed:
            self.error("; ".join(failed)[:300])
        return new
