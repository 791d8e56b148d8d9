"""Yahoo Finance chart API (keyless JSON): daily S&P 500, Nasdaq-100, Nikkei 225, VIX, DXY.

``GET https://query2.finance.yahoo.com/v8/finance/chart/%5EGSPC?period1=...&period2=...
&interval=1d&includePrePost=false&events=`` answers ``{"chart": {"result": [{"meta":
{"symbol": "^GSPC", "exchangeTimezoneName": "America/New_York", "gmtoffset": -14400, ...},
"timestamp": [...], "indicators": {"quote": [{"open": [...], "high": [...], "low": [...],
"close": [...], "volume": [...]}], ...}}], "error": null}}``; an unknown symbol answers 404
with ``{"chart": {"result": null, "error": {"code": "Not Found", "description": ...}}}``; a
daily bar's timestamp is the session's start, its date the exchange's local date; a null close
is a bar without a price. Searched: this is the request yfinance makes
(``yfinance/scrapers/history.py``: ``{base}/v8/finance/chart/{ticker}`` with ``period1``,
``period2``, ``interval``, ``includePrePost``, ``events``; it reads
``chart.result[0].meta.exchangeTimezoneName`` and ``chart.error``), and it works without the
crumb/cookie the other Yahoo endpoints want (karlwancl/YahooFinanceApi#75, 2024-09). Known
fragility: HTTP 429 "Too Many Requests" for clients that look like robots
(atreadw1492/yahoo_fin#130), outages, unannounced changes; every one of them is a reported
source failure here, never a crash, and the symbol falls back to its next source.

Why not yfinance: it requires a curl_cffi session (browser TLS impersonation) and a
cookie/crumb handshake with hard-coded Yahoo hosts (``fc.yahoo.com``, ``query2...``), so it
cannot be pointed at a local test server, and it is synchronous (pandas). The one request it
makes for prices is this one, implemented here with aiohttp.

Stamps (when a daily close is known): ^GSPC and ^NDX 16:00 New York; ^VIX 16:15 New York
(Cboe computes it until 16:15); ^N225 15:00 Tokyo, 15:30 from 2024-11-05 (the TSE extended
its afternoon session); DX-Y.NYB 15:00 New York (the history README: Yahoo's daily close of
the ICE index equals the index at 15:00 New York). A bar of today is only kept once its close
time has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep, year_end
from connectors.publication import NEW_YORK, TOKYO, OnObservationDate, known_at

DEFAULT_URL = "https://query2.finance.yahoo.com"
HEADERS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) stressbot-history/0.1"}

#: symbol -> (Yahoo ticker, when its daily close is known)
TICKERS: dict[str, tuple[str, OnObservationDate]] = {
    "SPX": ("^GSPC", OnObservationDate(NEW_YORK, time(16, 0))),
    "NDX": ("^NDX", OnObservationDate(NEW_YORK, time(16, 0))),
    "VIX": ("^VIX", OnObservationDate(NEW_YORK, time(16, 15))),
    "N225": ("^N225", OnObservationDate(TOKYO, time(15, 0), ((date(2024, 11, 5), time(15, 30)),))),
    "DXY": ("DX-Y.NYB", OnObservationDate(NEW_YORK, time(15, 0))),
}


def parse_chart(body: bytes, what: str) -> list[tuple[date, float | None]]:
    """(exchange-local date, close or None) of each daily bar of a chart answer."""
    try:
        doc = orjson.loads(body)
        chart = doc["chart"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise SourceFormatError(
            f'{what}: expected {{"chart": {{"result": [...]}}}}, got {body[:80]!r}'
        ) from e
    error = chart.get("error") if isinstance(chart, dict) else None
    if error:
        raise SourceFormatError(f"{what}: Yahoo says {error}")
    try:
        result: dict[str, Any] = chart["result"][0]
        meta = result["meta"]
        stamps: list[int] = result.get("timestamp") or []
        closes: list[Any] = []
        if stamps:  # a range without bars has no timestamps and an empty quote
            closes = result["indicators"]["quote"][0].get("close") or []
        zone = ZoneInfo(meta.get("exchangeTimezoneName") or "UTC")
    except (KeyError, IndexError, TypeError) as e:
        raise SourceFormatError(
            f"{what}: a chart answer without result[0].meta/indicators.quote ({e!r}); did "
            "Yahoo change its chart API?"
        ) from e
    except (ValueError, OSError) as e:  # an unknown zone name
        raise SourceFormatError(f"{what}: bad exchangeTimezoneName ({e})") from e
    if len(closes) != len(stamps):
        raise SourceFormatError(f"{what}: {len(stamps)} timestamps but {len(closes)} closes")
    out: list[tuple[date, float | None]] = []
    for t, c in zip(stamps, closes, strict=True):
        d = datetime.fromtimestamp(int(t), zone).date()
        ok = isinstance(c, int | float) and not isinstance(c, bool)
        out.append((d, float(c) if ok else None))
    return out


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    out: dict[str, SymbolResult] = {}
    for symbol in symbols:
        ticker, rule = TICKERS[symbol]
        result = out[symbol] = SymbolResult(symbol, f"Yahoo {ticker} 1d")
        url = f"{ctx.base_url.rstrip('/')}/v8/finance/chart/{quote(ticker, safe='')}"

        async def get(year: int, what: str, url: str = url) -> bytes:
            start = datetime(year, 1, 1, tzinfo=UTC).timestamp() - 86400
            end = min(year_end(year) + 86400, ctx.now)
            params = {
                "period1": str(int(start)),
                "period2": str(int(end)),
                "interval": "1d",
                "includePrePost": "false",
                "events": "",
            }
            return await ctx.http.get_bytes(url, params, what, expect="json", headers=HEADERS)

        async for year, bars in ctx.yearly(
            ("yahoo", ticker), "json", f"Yahoo {ticker}", get, parse_chart
        ):
            for d, close in bars:
                if d.year != year or d.weekday() >= 5:
                    continue
                keep(result, known_at(d, rule), close, ctx.window, ctx.now)
    return out


SOURCE = Source(
    name="yahoo",
    label="Yahoo Finance chart API (v8, JSON)",
    url=DEFAULT_URL,
    symbols=tuple(TICKERS),
    fetch=fetch,
    granularity="1d (exchange close)",
    lag="after the close (stamped at the close)",
    limits="unofficial: 429s for robot-like clients, changes without notice",
)
