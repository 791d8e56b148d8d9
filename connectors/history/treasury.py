"""US Treasury daily par yield curve (keyless CSV): US2Y, US10Y, US30Y history.

``GET https://home.treasury.gov/resource-center/data-chart-center/interest-rates/
daily-treasury-rates.csv/{YEAR}/all?type=daily_treasury_yield_curve&field_tdr_date_value={YEAR}
&page&_format=csv`` answers one calendar year, newest row first, with the header
``Date,"1 Mo","2 Mo",...,"2 Yr",...,"10 Yr",...,"30 Yr"`` (2025 added ``"1.5 Mo"``; columns
are read by name, never by position) and dates as ``MM/DD/YYYY``; an empty field is a tenor
without a value that day (the 30-year was not published 2002-2006). This is the recipe that
public clients use (searched: several repositories build exactly this URL and read
``"10 Yr"``/``"2 Yr"`` by header name); the shared fixture
``../shared/fixtures/treasury/daily-treasury-par-yield-curve-2025-01-02.csv`` has the columns
(re-exported with ISO dates, which the parser accepts too). The Atom/XML feed of the same
data (``.../pages/xml?data=daily_treasury_yield_curve&field_tdr_date_value_month=YYYYMM``)
is what the live feed polls (:mod:`connectors.feeds.treasury`); a body in that format (an
Atom ``<feed>`` of ``<m:properties>`` with ``<d:NEW_DATE>``, ``<d:BC_2YEAR>``, ...; the shared
fixture ``yield_curve_raw_properties.xml`` is one real entry) is read too, so a mirror that
serves the XML works.

Yields are par yields at the close, stamped 16:00 New York on their date (the convention of
the history README for CMT yields; Treasury publishes them after the close). One cache file
per year.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import date, datetime

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep
from connectors.publication import CLOSE_NEW_YORK, known_at

DEFAULT_URL = (
    "https://home.treasury.gov/resource-center/data-chart-center/interest-rates/"
    "daily-treasury-rates.csv"
)
#: symbol -> the CSV column of its tenor
COLUMNS = {"US2Y": "2 Yr", "US10Y": "10 Yr", "US30Y": "30 Yr"}


def _date(text: str) -> date:
    t = text.strip()
    if "/" in t:
        return datetime.strptime(t, "%m/%d/%Y").date()
    return date.fromisoformat(t)


#: XML field of each CSV column (the Atom feed's ``<d:BC_10YEAR>`` is the CSV's ``"10 Yr"``)
XML_FIELDS = {"BC_2YEAR": "2 Yr", "BC_10YEAR": "10 Yr", "BC_30YEAR": "30 Yr"}


def parse_par_yield_xml(body: bytes, what: str = "Treasury") -> list[tuple[date, dict[str, str]]]:
    """The same rows from the Atom/XML feed: each ``<m:properties>`` has ``<d:NEW_DATE>`` and
    ``<d:BC_2YEAR>`` ... (the shared fixture ``yield_curve_raw_properties.xml``)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise SourceFormatError(f"{what}: not well-formed XML ({e})") from e
    out: list[tuple[date, dict[str, str]]] = []
    for props in root.iter():
        if props.tag.rsplit("}", 1)[-1] != "properties":
            continue
        fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in props}
        try:
            d = date.fromisoformat(fields.get("NEW_DATE", "")[:10])
        except ValueError as e:
            raise SourceFormatError(f"{what}: an entry without a valid NEW_DATE") from e
        out.append((d, {col: fields.get(f, "") for f, col in XML_FIELDS.items()}))
    if not out and root.tag.rsplit("}", 1)[-1] not in ("feed", "properties"):
        raise SourceFormatError(f"{what}: XML without <m:properties> entries ({root.tag})")
    out.sort(key=lambda r: r[0])
    return out


def parse_par_yields(body: bytes, what: str = "Treasury") -> list[tuple[date, dict[str, str]]]:
    """Rows of either format Treasury serves: the CSV, or the Atom/XML feed."""
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return parse_par_yield_xml(body, what)
    return parse_par_yield_csv(body, what)


def parse_par_yield_csv(body: bytes, what: str = "Treasury") -> list[tuple[date, dict[str, str]]]:
    """(date, {column: value text}) rows of a daily par yield curve CSV, oldest first."""
    text = body.decode("utf-8-sig", "replace")
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise SourceFormatError(f"{what}: empty answer (expected a CSV with a 'Date' column)")
    head = [c.strip() for c in rows[0]]
    if not head or head[0] != "Date" or not any(c in head for c in COLUMNS.values()):
        raise SourceFormatError(
            f'{what}: expected the header Date,...,"2 Yr",...,"10 Yr",...,"30 Yr", got '
            f"{','.join(head)[:120]!r}; did the Treasury change its CSV?"
        )
    out: list[tuple[date, dict[str, str]]] = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            d = _date(row[0])
        except ValueError as e:
            raise SourceFormatError(f"{what}: line {n}: bad date {row[0][:20]!r}") from e
        if len(row) < len(head):
            raise SourceFormatError(f"{what}: line {n} is cut short ({len(row)} fields)")
        out.append((d, {h: v.strip() for h, v in zip(head[1:], row[1:], strict=False)}))
    out.sort(key=lambda r: r[0])
    return out


def _value(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    out = {s: SymbolResult(s, f"Treasury par yield {COLUMNS[s]}") for s in symbols}

    async def get(year: int, what: str) -> bytes:
        params = {
            "type": "daily_treasury_yield_curve",
            "field_tdr_date_value": str(year),
            "page": "",
            "_format": "csv",
        }
        url = f"{ctx.base_url.rstrip('/')}/{year}/all"
        return await ctx.http.get_bytes(url, params, what, expect="csv")

    chunks = ctx.yearly(
        ("treasury", "par-yield"), "csv", "Treasury par yields", get, parse_par_yields
    )
    async for _year, rows in chunks:
        for d, values in rows:
            for s in symbols:
                if d.weekday() >= 5:
                    continue
                ts = known_at(d, CLOSE_NEW_YORK)
                keep(out[s], ts, _value(values.get(COLUMNS[s])), ctx.window, ctx.now)
    return out


SOURCE = Source(
    name="treasury",
    label="US Treasury daily par yield curve (CSV)",
    url=DEFAULT_URL,
    symbols=tuple(COLUMNS),
    fetch=fetch,
    granularity="1d",
    lag="same day, after the close (stamped 16:00 New York)",
    limits="one request per calendar year; no key",
)
