"""The FRED CSV format (``fredgraph.csv``) and FRED's value text, shared by the live feed
(:mod:`connectors.feeds.fred`) and the history download (:mod:`connectors.history.fred_csv`).

A body has the header ``observation_date,SERIES`` (older files: ``DATE,SERIES``) and one
``YYYY-MM-DD,value`` row a date; ``.`` or an empty field marks a date without a value
(holidays).
"""

from __future__ import annotations

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
