"""FRED series history: the keyless ``fredgraph.csv`` (opt-in) and the table of FRED series.

``GET {base}?id=SERIES&cosd=YYYY-MM-DD&coed=YYYY-MM-DD`` answers a CSV with the header
``observation_date,SERIES`` (older files: ``DATE,SERIES``), one row per date, and ``.`` or an
empty field where there is no value (holidays). Since about 2026-05-30 this endpoint answers
HTTP 403 to programmatic clients (quantmod issue #453: "FRED now returns HTTP 403 for
unauthenticated CSV downloads", from 2026-06-05; tidyquant#263), so it is no default source
any more: ask for it with ``--source SYMBOL=fred_csv``. The FRED API with a key is
:mod:`connectors.history.fred_api`; both use :data:`FRED_SYMBOLS` and
:func:`fetch_fred_symbols`.

Each series is fetched in calendar-year chunks (one cache file per series and year), so
overlapping ranges share the cache. The publication rule of each series (when a value became
known, see :mod:`connectors.publication`) is in :data:`FRED_SYMBOLS`. The H.10 exchange rates
(``DEX*``) are published weekly, on the Monday after their week (``H10_WEEKLY``), not at noon
of their own date. The body parser is :mod:`connectors.fred_format`, shared with the live FRED
feed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from connectors.fred_format import parse_fredgraph_csv, parse_value
from connectors.history.common import Source, SourceContext, SymbolResult, keep, year_end
from connectors.publication import (
    CLOSE_NEW_YORK,
    EFFECTIVE_NEW_YORK,
    H10_WEEKLY,
    NEW_YORK,
    NEXT_MORNING_NEW_YORK,
    TOKYO,
    OnNextPublication,
    OnObservationDate,
    OnWeeklyRelease,
    PublicationRule,
    known_at_each,
)

DEFAULT_URL = "https://fred.stlouisfed.org/graph/fredgraph.csv"
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
    "EUR/USD": (FredSeries("DEXUSEU", H10_WEEKLY),),
    "USD/JPY": (FredSeries("DEXJPUS", H10_WEEKLY),),
    "GBP/USD": (FredSeries("DEXUSUK", H10_WEEKLY),),
    "USD/CAD": (FredSeries("DEXCAUS", H10_WEEKLY),),
    "USD/CHF": (FredSeries("DEXSZUS", H10_WEEKLY),),
    "USD/SEK": (FredSeries("DEXSDUS", H10_WEEKLY),),
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

#: (series id, year) -> that year's (date, value text) rows
GetYear = Callable[[str, int], Awaitable[list[tuple[date, str]]]]


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
    # a fixed local time on D is within a day of D in UTC; a weekly release up to 10 days later
    wide = isinstance(series.published, OnNextPublication | OnWeeklyRelease)
    margin = timedelta(days=MARGIN_DAYS + 2 if wide else 1)
    lo = start - margin
    hi = min(end + margin, today)
    if series.first is not None:
        lo = max(lo, series.first)
    if series.last is not None:
        hi = min(hi, series.last)
    return list(range(lo.year, hi.year + 1)) if lo <= hi else []


async def fetch_fred_symbols(
    ctx: SourceContext, symbols: Sequence[str], get_year: GetYear, label: str
) -> dict[str, SymbolResult]:
    """Rows of each symbol with ts inside the window, from its FRED series, year by year."""
    start = datetime.fromtimestamp(ctx.window[0], UTC).date()
    end = datetime.fromtimestamp(ctx.window[1], UTC).date()
    today = datetime.fromtimestamp(ctx.now, UTC).date()
    out: dict[str, SymbolResult] = {}
    for symbol in symbols:
        pieces = FRED_SYMBOLS[symbol]
        result = out[symbol] = SymbolResult(
            symbol, f"{label} " + "+".join(p.series_id for p in pieces)
        )
        for piece in pieces:
            obs: list[tuple[date, str]] = []
            for year in _years(piece, start, end, today):
                obs += await get_year(piece.series_id, year)
            obs = [
                (d, v)
                for d, v in obs
                if (piece.first is None or d >= piece.first)
                and (piece.last is None or d <= piece.last)
            ]
            for ts, d, v in stamp_observations(piece, obs):
                if piece.weekdays_only and d.weekday() >= 5:
                    v = None
                keep(result, ts, v, ctx.window, ctx.now)
        if not result.rows:
            result.notes.append(f"{result.source} has no values with ts in the window")
    return out


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    async def get_year(series_id: str, year: int) -> list[tuple[date, str]]:
        what = f"FRED {series_id} {year}"

        async def get() -> bytes:
            params = {"id": series_id, "cosd": f"{year}-01-01", "coed": f"{year}-12-31"}
            return await ctx.http.get_bytes(ctx.base_url, params, what, expect="csv")

        return await ctx.chunk(
            ("fred", series_id, f"{year}.csv"),
            year_end(year),
            what,
            get,
            lambda b: parse_fredgraph_csv(b.decode("utf-8", "replace"), series_id),
        )

    return await fetch_fred_symbols(ctx, symbols, get_year, "FRED")


SOURCE = Source(
    name="fred_csv",
    label="FRED fredgraph.csv (keyless; 403 to programmatic clients since 2026-05-30)",
    url=DEFAULT_URL,
    symbols=tuple(FRED_SYMBOLS),
    fetch=fetch,
    granularity="1d",
    lag="as the series (H.10 FX weekly)",
    limits="opt-in only: answers 403 to programmatic clients since about 2026-05-30",
)
