"""New York Fed Markets API (keyless JSON): SOFR history (EFFR has the same shape).

``GET https://markets.newyorkfed.org/api/rates/secured/sofr/search.json?startDate=2024-06-01
&endDate=2024-06-06`` answers ``{"refRates": [{"effectiveDate": "2024-06-06", "type": "SOFR",
"percentRate": 5.33, "percentPercentile1": 5.29, ..., "volumeInBillions": 2008,
"revisionIndicator": ""}, ...]}``, newest first (the recorded answer in
``../shared/fixtures/nyfed/sofr_search_2024-06-01_2024-06-06.json``, from OpenBB's VCR
cassette; the NY Fed's own API page is https://markets.newyorkfed.org/static/docs/markets-api.html).
EFFR is ``/api/rates/unsecured/effr/search.json``; it is not one of the engine's symbols, so
only SOFR is offered.

SOFR for business date D is published at about 08:00 New York on the next business day: each
value is stamped 08:00 New York on the next date that SOFR itself has a value (so holidays are
skipped), the newest one on the next weekday (:class:`connectors.publication.OnNextPublication`).
One request per calendar year; the window is widened by ten days both ways so that values
published inside it, and the next publication date of the last one, are seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep
from connectors.publication import NEXT_MORNING_NEW_YORK, known_at_each

DEFAULT_URL = "https://markets.newyorkfed.org"
#: symbol -> (API path, the "type" of its rows)
RATES = {"SOFR": ("/api/rates/secured/sofr/search.json", "SOFR")}
MARGIN_DAYS = 10
#: (effective date, percent rate or None)
Observation = tuple[date, float | None]


def parse_ref_rates(body: bytes, rate_type: str, what: str) -> list[Observation]:
    """(effective date, percent rate or None) of every row of `rate_type`, oldest first."""
    try:
        doc = orjson.loads(body)
        rows: list[dict[str, Any]] = doc["refRates"]
        if not isinstance(rows, list):
            raise TypeError
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise SourceFormatError(
            f'{what}: expected {{"refRates": [...]}}, got {body[:80]!r}; did the NY Fed API change?'
        ) from e
    out: list[Observation] = []
    for r in rows:
        if str(r.get("type", "")).strip() != rate_type:
            continue
        try:
            d = date.fromisoformat(str(r["effectiveDate"]))
        except (KeyError, ValueError) as e:
            raise SourceFormatError(f"{what}: a row without a valid effectiveDate: {r}") from e
        v = r.get("percentRate")
        out.append(
            (d, float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None)
        )
    out.sort(key=lambda x: x[0])
    return out


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    out: dict[str, SymbolResult] = {}
    for symbol in symbols:
        path, rate_type = RATES[symbol]
        result = out[symbol] = SymbolResult(symbol, f"NY Fed {rate_type}")
        url = ctx.base_url.rstrip("/") + path

        async def get(year: int, what: str, url: str = url) -> bytes:
            params = {"startDate": f"{year}-01-01", "endDate": f"{year}-12-31"}
            return await ctx.http.get_bytes(url, params, what, expect="json")

        def parse(body: bytes, what: str, rate_type: str = rate_type) -> list[Observation]:
            return parse_ref_rates(body, rate_type, what)

        label = f"NY Fed {rate_type}"
        chunks = ctx.yearly(
            ("nyfed", rate_type), "json", label, get, parse, margin_days=MARGIN_DAYS
        )
        obs = [o async for _year, year_obs in chunks for o in year_obs]
        published = [d for d, v in obs if v is not None]
        stamps = known_at_each(NEXT_MORNING_NEW_YORK, [d for d, _ in obs], published)
        for ts, (_d, v) in zip(stamps, obs, strict=True):
            keep(result, ts, v, ctx.window, ctx.now)
    return out


SOURCE = Source(
    name="nyfed",
    label="New York Fed Markets API (reference rates)",
    url=DEFAULT_URL,
    symbols=tuple(RATES),
    fetch=fetch,
    granularity="1d",
    lag="08:00 New York on the next business day",
    limits="one request per calendar year; no key",
)
