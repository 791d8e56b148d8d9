"""ECB euro foreign exchange reference rates (keyless CSV): daily FX history.

``GET https://data-api.ecb.europa.eu/service/data/EXR/D.USD+JPY+GBP+CAD+CHF+SEK.EUR.SP00.A
?startPeriod=2020-01-01&endPeriod=2020-12-31&format=csvdata`` (the ECB Data Portal's SDMX
REST API; ``+`` joins several currencies in one key) answers CSV with a header naming
``KEY,FREQ,CURRENCY,CURRENCY_DENOM,EXR_TYPE,EXR_SUFFIX,TIME_PERIOD,OBS_VALUE,...``; columns are
read by name. Each value is units of CURRENCY per euro on TARGET business day TIME_PERIOD.
Searched: public clients read exactly ``D.USD.EUR.SP00.A?format=csvdata`` with ``TIME_PERIOD``
and ``OBS_VALUE`` (pandas ``read_csv`` on the URL); the ECB's API help is
https://data.ecb.europa.eu/help/api/data; rates are updated daily at about 16:00 CET.

The engine's pairs are crosses through the euro: EUR/USD = USD per EUR; USD/JPY = JPY per EUR
/ USD per EUR; GBP/USD = USD per EUR / GBP per EUR; USD/CAD, USD/CHF, USD/SEK likewise
(rounded to 6 decimals). Stamped 16:00 Europe/Berlin on D, when the rates are published (the
concertation is at 14:10 CET; the shared history files stamp 14:15, before publication).
One request per calendar year for all currencies.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, time
from zoneinfo import ZoneInfo

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep
from connectors.publication import OnObservationDate, known_at

DEFAULT_URL = "https://data-api.ecb.europa.eu/service/data/EXR"
CURRENCIES = ("USD", "JPY", "GBP", "CAD", "CHF", "SEK")
PUBLISHED = OnObservationDate(ZoneInfo("Europe/Berlin"), time(16, 0))
#: symbol -> (numerator currency, denominator currency), each "units per EUR"
CROSSES = {
    "EUR/USD": ("USD", "EUR"),
    "USD/JPY": ("JPY", "USD"),
    "GBP/USD": ("USD", "GBP"),
    "USD/CAD": ("CAD", "USD"),
    "USD/CHF": ("CHF", "USD"),
    "USD/SEK": ("SEK", "USD"),
}


def parse_exr_csv(body: bytes, what: str) -> dict[date, dict[str, float]]:
    """date -> {currency: units per EUR} of an EXR csvdata body."""
    text = body.decode("utf-8-sig", "replace")
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise SourceFormatError(f"{what}: empty answer (expected EXR csvdata)")
    head = [c.strip() for c in rows[0]]
    try:
        ic, it, iv = head.index("CURRENCY"), head.index("TIME_PERIOD"), head.index("OBS_VALUE")
    except ValueError:
        raise SourceFormatError(
            f"{what}: expected a header with CURRENCY, TIME_PERIOD and OBS_VALUE, got "
            f"{','.join(head)[:120]!r}; did the ECB API change?"
        ) from None
    out: dict[date, dict[str, float]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ic, it, iv):
            raise SourceFormatError(f"{what}: line {n} is cut short")
        try:
            d = date.fromisoformat(row[it].strip())
        except ValueError as e:
            raise SourceFormatError(f"{what}: line {n}: bad TIME_PERIOD {row[it][:20]!r}") from e
        try:
            v = float(row[iv])
        except ValueError:
            continue  # a missing observation
        if v > 0:
            out.setdefault(d, {})[row[ic].strip()] = v
    return out


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    out = {s: SymbolResult(s, "ECB reference rates") for s in symbols}
    url = f"{ctx.base_url.rstrip('/')}/D.{'+'.join(CURRENCIES)}.EUR.SP00.A"

    async def get(year: int, what: str) -> bytes:
        params = {"startPeriod": f"{year}-01-01", "endPeriod": f"{year}-12-31", "format": "csvdata"}
        return await ctx.http.get_bytes(url, params, what, expect="csv")

    async for _year, days in ctx.yearly(("ecb", "exr"), "csv", "ECB EXR", get, parse_exr_csv):
        for d in sorted(days):
            rates = {**days[d], "EUR": 1.0}
            for s in symbols:
                num, den = CROSSES[s]
                value = None
                if num in rates and den in rates:
                    value = round(rates[num] / rates[den], 6)
                keep(out[s], known_at(d, PUBLISHED), value, ctx.window, ctx.now)
    return out


SOURCE = Source(
    name="ecb",
    label="ECB euro reference rates (SDMX CSV)",
    url=DEFAULT_URL,
    symbols=tuple(CROSSES),
    fetch=fetch,
    granularity="1d (TARGET days)",
    lag="same day about 16:00 Frankfurt",
    limits="one request per calendar year; crosses through EUR",
)
