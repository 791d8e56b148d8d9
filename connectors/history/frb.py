"""Federal Reserve Board, Data Download Program (keyless CSV): IORB/IOER and H.10 FX history.

``GET https://www.federalreserve.gov/datadownload/Output.aspx?rel=PRATES
&series=c27939ee810cb2e929a920a6bd77d9f6&lastobs=&from=01/01/2020&to=12/31/2020&filetype=csv
&label=include&layout=seriescolumn&type=package`` is the policy-rates package. With
``label=include`` and ``layout=seriescolumn`` the body is five label rows (``"Series
Description"``, ``"Unit:"``, ``"Multiplier:"``, ``"Currency:"``, ``"Unique Identifier: "``),
the header ``"Time Period","RESBME_N.D","RESBMS_N.D","RESBM_N.D"`` and one row a date
(``2026-08-11,,,3.65``); an empty field, or ``ND`` ("no data"), is a date without a value.
The body is read by :func:`connectors.fred_format.parse_ddp_csv`, shared with the live feed.
``RESBM_N.D`` is IORB (from 2021-07-29), ``RESBME_N.D`` the IOER it replaced. Searched: this
package id and shape are what public clients read (OpenBB's federal_reserve provider reads
``header=5``, ``"Time Period"``, ``RESBM_N.D`` and ``RESBME_N.D``; several dashboards and
their test fixtures show the rows above). The H.10 rates package is the same program:
``rel=H10&series=60f32914ab61dfab590e0e470153e3ae`` with columns ``RXI$US_N.B.EU`` (USD per
EUR), ``RXI_N.B.JA`` (JPY per USD), ``RXI$US_N.B.UK`` (USD per GBP), ``RXI_N.B.CA``,
``RXI_N.B.SZ``, ``RXI_N.B.SD`` (CAD, CHF, SEK per USD).

Limits, as reported publicly: the Board is retiring the DDP (its "Build Your Package" goes
the week of 9 November 2026, further removals are planned, and long date ranges already answer
HTTP 200 with an empty body). So each request asks for one calendar year only, an empty body
is an error naming the cause, and both sources sit after the keyless alternatives where there
are any (FX: Dukascopy, ECB); IORB has no other keyless source (FRED needs ``FRED_API_KEY``).

Stamps: IORB/IOER of effective date D at 00:00 New York on D (an administered rate, announced
before it takes effect). H.10 noon buying rates are published weekly, on the Monday (16:15
New York) after their week: :data:`connectors.publication.H10_WEEKLY`, never at noon of their
own date, which would be up to ten days of look-ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial

from connectors import fred_format
from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep
from connectors.publication import EFFECTIVE_NEW_YORK, H10_WEEKLY, PublicationRule, known_at

DEFAULT_URL = "https://www.federalreserve.gov/datadownload/Output.aspx"
PRATES_PACKAGE = "c27939ee810cb2e929a920a6bd77d9f6"
H10_PACKAGE = "60f32914ab61dfab590e0e470153e3ae"
IORB_START = date(2021, 7, 29)
NO_DATA = fred_format.DDP_NO_DATA


@dataclass(frozen=True, slots=True)
class Column:
    """A DDP series as a symbol: `invert` when the series is quoted the other way round."""

    code: str
    first: date | None = None
    last: date | None = None
    invert: bool = False


PRATES_SYMBOLS: dict[str, tuple[Column, ...]] = {
    "IORB": (Column("RESBME_N.D", last=date(2021, 7, 28)), Column("RESBM_N.D", first=IORB_START)),
}
H10_SYMBOLS: dict[str, tuple[Column, ...]] = {
    "EUR/USD": (Column("RXI$US_N.B.EU"),),
    "USD/JPY": (Column("RXI_N.B.JA"),),
    "GBP/USD": (Column("RXI$US_N.B.UK"),),
    "USD/CAD": (Column("RXI_N.B.CA"),),
    "USD/CHF": (Column("RXI_N.B.SZ"),),
    "USD/SEK": (Column("RXI_N.B.SD"),),
}


def parse_ddp_csv(body: bytes, what: str, release: str) -> dict[str, list[tuple[date, str]]]:
    """Series code -> (date, value text) of a DDP CSV, by the parser the live feed uses
    (:func:`connectors.fred_format.parse_ddp_csv`); an empty body says why it is empty."""
    text = body.decode("utf-8-sig", "replace")
    if not text.strip():
        raise SourceFormatError(
            f"{what}: HTTP 200 with an empty body (the Board's Data Download Program answers "
            "so for ranges it no longer serves while it is retired); use the next source"
        )
    return fred_format.parse_ddp_csv(text, release)


def _value(text: str, invert: bool) -> float | None:
    if text.upper() in NO_DATA:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    if v <= 0 or v != v:
        return None
    return round(1.0 / v, 6) if invert else v


async def _fetch_package(
    ctx: SourceContext,
    symbols: Sequence[str],
    *,
    release: str,
    package: str,
    table: dict[str, tuple[Column, ...]],
    rule: PublicationRule,
    weekdays_only: bool,
    margin_days: int,
) -> dict[str, SymbolResult]:
    out = {
        s: SymbolResult(s, f"FRB {release} " + "+".join(c.code for c in table[s])) for s in symbols
    }

    async def get(year: int, what: str) -> bytes:
        params = {
            "rel": release,
            "series": package,
            "lastobs": "",
            "from": f"01/01/{year}",
            "to": f"12/31/{year}",
            "filetype": "csv",
            "label": "include",
            "layout": "seriescolumn",
            "type": "package",
        }
        return await ctx.http.get_bytes(ctx.base_url, params, what, expect="csv")

    parse = partial(parse_ddp_csv, release=release)
    label = f"FRB DDP {release}"
    chunks = ctx.yearly(("frb", release), "csv", label, get, parse, margin_days=margin_days)
    async for year, series in chunks:
        for s in symbols:
            for col in table[s]:
                if col.code not in series:
                    raise SourceFormatError(
                        f"FRB DDP {release} {year}: no column {col.code} (got "
                        f"{', '.join(series)[:120]}); did the package change?"
                    )
                for d, text in series[col.code]:
                    if (col.first and d < col.first) or (col.last and d > col.last):
                        continue
                    if weekdays_only and d.weekday() >= 5:
                        continue
                    keep(out[s], known_at(d, rule), _value(text, col.invert), ctx.window, ctx.now)
    return out


async def fetch_prates(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    return await _fetch_package(
        ctx,
        symbols,
        release="PRATES",
        package=PRATES_PACKAGE,
        table=PRATES_SYMBOLS,
        rule=EFFECTIVE_NEW_YORK,
        weekdays_only=False,
        margin_days=1,
    )


async def fetch_h10(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    return await _fetch_package(
        ctx,
        symbols,
        release="H10",
        package=H10_PACKAGE,
        table=H10_SYMBOLS,
        rule=H10_WEEKLY,
        weekdays_only=True,
        margin_days=12,  # a rate of D is released up to ten days after D
    )


SOURCE = Source(
    name="frb",
    label="Federal Reserve Board DDP, PRATES (policy rates)",
    url=DEFAULT_URL,
    symbols=tuple(PRATES_SYMBOLS),
    fetch=fetch_prates,
    granularity="1d (calendar days)",
    lag="in force from 00:00 New York on its effective date",
    limits="one request per calendar year; the DDP is being retired by the Board (2026-27)",
)

H10_SOURCE = Source(
    name="frb_h10",
    label="Federal Reserve Board DDP, H.10 noon buying rates",
    url=DEFAULT_URL,
    symbols=tuple(H10_SYMBOLS),
    fetch=fetch_h10,
    granularity="1d",
    lag="weekly: Monday 16:15 New York for the week before",
    limits="one request per calendar year; the DDP is being retired by the Board (2026-27)",
)
