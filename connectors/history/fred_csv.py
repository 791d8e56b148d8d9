"""FRED's keyless CSV download (``fredgraph.csv``): fetch, parse, stamp each value when known.

``GET {base}?id=SERIES&cosd=YYYY-MM-DD&coed=YYYY-MM-DD`` answers a CSV with the header
``observation_date,SERIES`` (older files: ``DATE,SERIES``), one row per date, and ``.`` or an
empty field where there is no value (holidays). No API key is needed.

Each series is fetched in calendar-year chunks (one cache file per series and year), so
overlapping ranges share the cache. The publication rule of each series (when a value became
known, see :mod:`connectors.publication`) is in :data:`FRED_SYMBOLS`; the table in
:mod:`connectors.history.download` explains each one. The body parser is
:mod:`connectors.fred_format`, shared with the live FRED feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from connectors.fred_format import parse_fredgraph_csv, parse_value
from connectors.history.common import ChunkCache, HttpClient, Progress, Row, SymbolResult
from connectors.publication import (
    CLOSE_NEW_YORK,
    EFFECTIVE_NEW_YORK,
    NEW_YORK,
    NEXT_MORNING_NEW_YORK,
    NOON_NEW_YORK,
    TOKYO,
    OnNextPublication,
    OnObservationDate,
    PublicationRule,
    known_at_each,
)

#: Days fetched beyond the window on both sides for SOFR: a value dated before the window can
#: be published inside it, and the newest value's stamp needs the next publication date.
MARGIN_DAYS = 10


@dataclass(frozen=True, slots=True)
class FredSeries:
    """A FRED series feeding a symbol, for the dates `first`..`last` (inclusive) when given."""

    series_id: str
    published: PublicationRule
    weekdays_only: bool = True
    first: date | None = None
    last: date | None = None


IORB_START = date(2021, 7, 29)

#: symbol -> the FRED series that make it up (several when a series replaced another).
FRED_SYMBOLS: dict[str, tuple[FredSeries, ...]] = {
    "US2Y": (FredSeries("DGS2", CLOSE_NEW_YORK),),
    "US10Y": (FredSeries("DGS10", CLOSE_NEW_YORK),),
    "US30Y": (FredSeries("DGS30", CLOSE_NEW_YORK),),
    "SOFR": (FredSeries("SOFR", NEXT_MORNING_NEW_YORK),),
    "IORB": (
        FredSeries(
            "IOER", EFFECTIVE_NEW_YORK, weekdays_only=False, last=IORB_START - timedelta(days=1)
        ),
        FredSeries("IORB", EFFECTIVE_NEW_YORK, weekdays_only=False, first=IORB_START),
    ),
    "EUR/USD": (FredSeries("DEXUSEU", NOON_NEW_YORK),),
    "USD/JPY": (FredSeries("DEXJPUS", NOON_NEW_YORK),),
    "GBP/USD": (FredSeries("DEXUSUK", NOON_NEW_YORK),),
    "USD/CAD": (FredSeries("DEXCAUS", NOON_NEW_YORK),),
    "USD/CHF": (FredSeries("DEXSZUS", NOON_NEW_YORK),),
    "USD/SEK": (FredSeries("DEXSDUS", NOON_NEW_YORK),),
    "SPX": (FredSeries("SP500", CLOSE_NEW_YORK),),
    "NDX": (FredSeries("NASDAQ100", CLOSE_NEW_YORK),),
    "N225": (
        FredSeries(
            "NIKKEI225",
            OnObservationDate(TOKYO, time(15, 0), changes=((date(2024, 11, 5), time(15, 30)),)),
        ),
    ),
    "VIX": (FredSeries("VIXCLS", OnObservationDate(NEW_YORK, time(16, 15))),),
}


def stamp_observations(
    series: FredSeries, observations: Sequence[tuple[date, str]]
) -> list[tuple[float, date, float | None]]:
    """(ts known, date, value or None when unusable) for each observation, in date order.

    A value published on the next publication date is known when the series next has a
    value (the history sees it; for the newest row, the next business day).
    """
    parsed = [(d, parse_value(v)) for d, v in sorted(observations)]
    published = [d for d, v in parsed if v is not None]
    stamps = known_at_each(series.published, [d for d, _ in parsed], published)
    return [(ts, d, v) for ts, (d, v) in zip(stamps, parsed, strict=True)]


def _years(series: FredSeries, start: date, end: date, today: date) -> list[int]:
    # a fixed local time on D is within a day of D in UTC
    margin = timedelta(days=MARGIN_DAYS if isinstance(series.published, OnNextPublication) else 1)
    lo = start - margin
    hi = min(end + margin, today)
    if series.first is not None:
        lo = max(lo, series.first)
    if series.last is not None:
        hi = min(hi, series.last)
    return list(range(lo.year, hi.year + 1)) if lo <= hi else []


async def fetch_year(
    http: HttpClient,
    cache: ChunkCache,
    series_id: str,
    year: int,
    *,
    base_url: str,
    progress: Progress,
) -> list[tuple[date, str]]:
    """One calendar year of a series, from the cache when it has it."""
    path = cache.path("fred", series_id, f"{year}.csv")
    period_end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    body = await cache.load(path, period_end)
    if body is not None:
        rows = parse_fredgraph_csv(body.decode(), series_id)
        progress(f"FRED {series_id} {year}: {len(rows)} rows (cache)")
        return rows
    text = await http.get_text(
        base_url,
        {"id": series_id, "cosd": f"{year}-01-01", "coed": f"{year}-12-31"},
        what=f"FRED {series_id} {year}",
    )
    rows = parse_fredgraph_csv(text, series_id)  # never cache a body that does not parse
    await cache.store(path, text.encode())
    progress(f"FRED {series_id} {year}: {len(rows)} rows")
    return rows


async def fetch_symbol(
    http: HttpClient,
    cache: ChunkCache,
    symbol: str,
    start: date,
    end: date,
    window: tuple[float, float],
    *,
    base_url: str,
    progress: Progress,
) -> SymbolResult:
    """Rows of `symbol` with ts inside `window` (inclusive), from its FRED series."""
    pieces = FRED_SYMBOLS[symbol]
    result = SymbolResult(symbol, "FRED " + "+".join(p.series_id for p in pieces))
    today = datetime.now(UTC).date()
    lo, hi = window
    for piece in pieces:
        obs: list[tuple[date, str]] = []
        for year in _years(piece, start, end, today):
            obs += await fetch_year(
                http, cache, piece.series_id, year, base_url=base_url, progress=progress
            )
        obs = [
            (d, v)
            for d, v in obs
            if (piece.first is None or d >= piece.first) and (piece.last is None or d <= piece.last)
        ]
        for ts, d, v in stamp_observations(piece, obs):
            if not lo <= ts <= hi:
                continue
            if v is None or (piece.weekdays_only and d.weekday() >= 5):
                result.skipped += 1
                continue
            result.rows.append(Row(ts, symbol, v))
    if not result.rows:
        result.notes.append(f"{result.source} has no values with ts in the window")
    return result
