"""US Treasury daily par yield curve: the keyless Atom/XML feed, one month per request.

Each ``<entry>`` holds an ``<m:properties>`` element with ``<d:NEW_DATE>`` and the tenors
``<d:BC_2YEAR>``, ``<d:BC_10YEAR>``, ``<d:BC_30YEAR>`` ... (``m:null="true"`` when empty).
Yields are stamped 16:00 New York on their date (the close they describe).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime

from connectors.base import FeedContext, PollError
from connectors.config import TreasuryFeedConfig
from connectors.http_poll import HttpPolledFeed
from connectors.publication import NEW_YORK, default_stamp


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_par_yields(body: bytes) -> list[tuple[date, dict[str, float]]]:
    """(date, {field: value}) for each entry of the feed, in document order."""
    root = ET.fromstring(body)
    out: list[tuple[date, dict[str, float]]] = []
    for props in root.iter():
        if _local(props.tag) != "properties":
            continue
        d: date | None = None
        values: dict[str, float] = {}
        for child in props:
            name = _local(child.tag)
            text = (child.text or "").strip()
            if name == "NEW_DATE" and text:
                d = date.fromisoformat(text[:10])
            elif name.startswith("BC_") and text:
                values[name] = float(text)
        if d is not None:
            out.append((d, values))
    return out


class TreasuryFeed(HttpPolledFeed[TreasuryFeedConfig]):
    kind = "treasury"

    def __init__(self, name: str, cfg: TreasuryFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self._polled_once = False

    def months(self) -> list[str]:
        """This month (New York) and, on the first poll or early in a month, the previous."""
        today = datetime.fromtimestamp(self.clock(), NEW_YORK).date()
        this = f"{today.year:04d}{today.month:02d}"
        if self._polled_once and today.day > 7:
            return [this]
        prev = (
            date(today.year - 1, 12, 1)
            if today.month == 1
            else date(today.year, today.month - 1, 1)
        )
        return [f"{prev.year:04d}{prev.month:02d}", this]

    async def poll(self) -> int:
        entries: list[tuple[date, dict[str, float]]] = []
        for month in self.months():
            body = await self.get(self.cfg.url.replace("{yyyymm}", month))
            if body is None:
                continue
            try:
                entries.extend(parse_par_yields(body))
            except (ET.ParseError, ValueError) as e:
                self.validator.drop("malformed", f"yield curve XML for {month}: {e}")
                raise PollError(f"malformed XML for {month}: {e}") from None
        self._polled_once = True
        entries.sort(key=lambda e: e[0])
        entries = entries[-self.cfg.lookback :]
        obs: list[tuple[str, float, float]] = []
        for d, values in entries:
            for field, canonical in self.symbols.items():
                v = values.get(field)
                if v is None:
                    self.validator.drop("missing_field", f"{field} on {d}")
                    continue
                obs.append((canonical, self.stamp(canonical, d, default_stamp(canonical)), v))
        return self.emit_new(obs)
