"""The FRED API (``FRED_API_KEY``): every FRED series of :data:`fred_csv.FRED_SYMBOLS`.

``GET https://api.stlouisfed.org/fred/series/observations?series_id=SOFR&api_key=KEY
&file_type=json&observation_start=2024-06-01&observation_end=2024-06-06`` answers
``{"realtime_start": ..., "count": 4, ..., "observations": [{"realtime_start": ...,
"realtime_end": ..., "date": "2024-06-03", "value": "5.35"}, ...]}``: values are strings and
``"."`` marks a date without a value (the recorded answer in
``../shared/fixtures/fred/series_observations_SOFR_2024-06-01_2024-06-06.json``; the FRED API
documentation, fred.stlouisfed.org/docs/api/fred/series_observations.html). A bad key answers
400 with ``{"error_code": 400, "error_message": "Bad Request. The value for variable api_key
is not registered..."}``. Limits: 120 requests a minute per key.

Keyed, so an option: it joins each symbol's source order (after the keyless sources) only
when ``FRED_API_KEY`` is set. The key is sent as a query parameter and never appears in a
message, a log line or a cache path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, year_end
from connectors.history.fred_csv import FRED_SYMBOLS, fetch_fred_symbols

DEFAULT_URL = "https://api.stlouisfed.org/fred/series/observations"
KEY_ENV = "FRED_API_KEY"


def parse_observations(body: bytes, series_id: str) -> list[tuple[date, str]]:
    what = f"FRED API {series_id}"
    try:
        doc = orjson.loads(body)
        rows: list[dict[str, Any]] = doc["observations"]
        if not isinstance(rows, list):
            raise TypeError
        return [(date.fromisoformat(str(r["date"])), str(r.get("value", "."))) for r in rows]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SourceFormatError(
            f'{what}: expected {{"observations": [{{"date": ..., "value": ...}}]}}, got '
            f"{body[:80]!r}"
        ) from e


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise SourceFormatError(f"FRED API: {KEY_ENV} is not set")

    async def get_year(series_id: str, year: int) -> list[tuple[date, str]]:
        what = f"FRED API {series_id} {year}"

        async def get() -> bytes:
            params = {
                "series_id": series_id,
                "api_key": key,
                "file_type": "json",
                "observation_start": f"{year}-01-01",
                "observation_end": f"{year}-12-31",
            }
            return await ctx.http.get_bytes(
                ctx.base_url, params, what, expect="json", secrets=(key,)
            )

        return await ctx.chunk(
            ("fred_api", series_id, f"{year}.json"),
            year_end(year),
            what,
            get,
            lambda b: parse_observations(b, series_id),
        )

    return await fetch_fred_symbols(ctx, symbols, get_year, "FRED API")


SOURCE = Source(
    name="fred",
    label="FRED API (series/observations, JSON)",
    url=DEFAULT_URL,
    symbols=tuple(FRED_SYMBOLS),
    fetch=fetch,
    granularity="1d",
    lag="as the series (H.10 FX weekly)",
    limits="needs FRED_API_KEY; 120 requests a minute",
    key_env=KEY_ENV,
)
