"""The Federal Reserve's CSV formats, shared by the live feeds (:mod:`connectors.feeds`) and
the history download (:mod:`connectors.history`), so feeds never import history:

* FRED's ``fredgraph.csv`` (:func:`parse_fredgraph_csv`): the header
  ``observation_date,SERIES`` (older files: ``DATE,SERIES``) and one ``YYYY-MM-DD,value`` row
  a date; ``.`` or an empty field marks a date without a value (holidays). Since about
  2026-05-30 this keyless endpoint answers 403 to programmatic clients (quantmod issues
  #453-#455): it stays as a format, the FRED API (key) and the Board's DDP are the sources.
* The Federal Reserve Board's Data Download Program (DDP) CSV (:func:`parse_ddp_csv`), keyless:
  ``GET https://www.federalreserve.gov/datadownload/Output.aspx?rel=PRATES
  &series=c27939ee810cb2e929a920a6bd77d9f6&lastobs=5&from=&to=&filetype=csv&label=include
  &layout=seriescolumn&type=package`` (release PRATES, policy rates: IORB is series
  ``RESBM_N.D``, the older IOER ``RESBME_N.D``; H.15 and H.10 are other releases of the same
  program). With ``label=include`` and ``layout=seriescolumn`` the body is five label rows
  (``"Series Description"``, ``"Unit:"``, ``"Multiplier:"``, ``"Currency:"``,
  ``"Unique Identifier: "``), then the header ``"Time Period","RESBME_N.D",...,"RESBM_N.D"``
  and one row a date: ``2026-08-11,,,3.65``; an empty field (or ``ND``, "no data", in H.15)
  is a date without a value. This is the shape read by public clients (OpenBB's
  federal_reserve provider, ``pd.read_csv(..., header=5)`` on ``"Time Period"``, columns
  ``RESBM_N.D``/``RESBME_N.D``) and shown in their test fixtures. The Board publishes the IORB
  rate each business day at 4:30 p.m. New York for the next business day
  (federalreserve.gov/datadownload, PRATES announcements).
"""

from __future__ import annotations

import csv
import io
from datetime import date

from bot.core.errors import StressbotError


class SourceFormatError(StressbotError):
    """A source answered with something that is not the format it is documented to send."""


def parse_fredgraph_csv(text: str, series_id: str) -> list[tuple[date, str]]:
    """(date, value text) rows of a fredgraph.csv body; raises on anything else."""
    lines = [ln.strip() for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    expected = f"observation_date,{series_id}"
    if not lines:
        raise SourceFormatError(f"FRED {series_id}: empty answer (expected header {expected!r})")
    head = [c.strip().strip('"') for c in lines[0].split(",")]
    if len(head) != 2 or head[0] not in ("observation_date", "DATE") or head[1] != series_id:
        raise SourceFormatError(
            f"FRED {series_id}: expected the header {expected!r} (or 'DATE,{series_id}'), got "
            f"{lines[0][:120]!r}; is the series id right and does the FRED URL point at "
            "fredgraph.csv?"
        )
    out: list[tuple[date, str]] = []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split(",")
        try:
            d = date.fromisoformat(cols[0].strip().strip('"'))
        except ValueError as e:
            raise SourceFormatError(
                f"FRED {series_id}: line {n}: expected YYYY-MM-DD, got {line[:80]!r}"
            ) from e
        out.append((d, cols[1].strip().strip('"') if len(cols) > 1 else ""))
    return out


def parse_value(text: str) -> float | None:
    """A published value, or None when missing (``.``/empty), non-numeric, not > 0."""
    t = text.strip()
    if t in ("", "."):
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    if v != v or v in (float("inf"), float("-inf")) or v <= 0:
        return None
    return v


#: Label rows of a DDP CSV before its "Time Period" header (label=include).
DDP_LABELS = ("Series Description", "Unit:", "Multiplier:", "Currency:", "Unique Identifier:")
#: DDP's marker of a date without a value (H.15 uses it; PRATES leaves the field empty).
DDP_NO_DATA = ("", "ND", "NC", "NA")


def parse_ddp_csv(text: str, release: str = "DDP") -> dict[str, list[tuple[date, str]]]:
    """Series code -> (date, value text) rows of a DDP CSV body; raises SourceFormatError on
    anything else (an HTML page, a truncated body, a header without "Time Period")."""
    body = text.lstrip("\ufeff")
    if body.lstrip()[:1] == "<":
        raise SourceFormatError(
            f"Fed DDP {release}: an HTML page instead of the CSV (a maintenance or challenge "
            f"page?): {' '.join(body.split())[:100]!r}"
        )
    rows = [r for r in csv.reader(io.StringIO(body)) if any(c.strip() for c in r)]
    head_at = next(
        (i for i, r in enumerate(rows) if r and r[0].strip().strip(":") == "Time Period"), None
    )
    if head_at is None:
        got = rows[0][0][:60] if rows and rows[0] else ""
        raise SourceFormatError(
            f"Fed DDP {release}: no 'Time Period' header row (expected the label rows "
            f"{', '.join(DDP_LABELS)} then 'Time Period',SERIES...; got {got!r}); is the "
            "URL a DDP Output.aspx package with filetype=csv&label=include&layout=seriescolumn?"
        )
    codes = [c.strip() for c in rows[head_at][1:]]
    if not codes or not all(codes):
        raise SourceFormatError(f"Fed DDP {release}: header row without series codes")
    out: dict[str, list[tuple[date, str]]] = {c: [] for c in codes}
    for n, row in enumerate(rows[head_at + 1 :], start=head_at + 2):
        try:
            d = date.fromisoformat(row[0].strip())
        except ValueError as e:
            raise SourceFormatError(
                f"Fed DDP {release}: row {n}: expected YYYY-MM-DD, got {','.join(row)[:80]!r}"
                " (only daily series are read)"
            ) from e
        if len(row) - 1 > len(codes):
            raise SourceFormatError(f"Fed DDP {release}: row {n} has more fields than series")
        for code, raw in zip(codes, row[1:], strict=False):
            v = raw.strip()
            out[code].append((d, "" if v in DDP_NO_DATA else v))
    return out
