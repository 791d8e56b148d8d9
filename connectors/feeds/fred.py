"""FRED, two ways: the `series/observations` API (JSON, with a key from the environment)
and the keyless CSV download (`fredgraph.csv`).

``GET https://api.stlouisfed.org/fred/series/observations?series_id=DGS10&api_key=...
&file_type=json&sort_order=desc&limit=5`` answers ``{"observations": [{"date": "2024-06-03",
"value": "5.35"}, ...]}``. ``GET https://fred.stlouisfed.org/graph/fredgraph.csv?id=DGS10
&cosd=2024-06-01`` answers ``observation_date,DGS10`` and one ``date,value`` row a day.
Values are text and ``"."`` (or nothing, in the CSV) marks a day without a value (holiday).
The key is never logged: errors are redacted before they are shown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import orjson

from connectors.base import FeedContext, FeedSetupError, PollError
from connectors.config import FredCsvFeedConfig, FredFeedConfig
from connectors.fred_format import SourceFormatError, parse_fredgraph_csv
from connectors.http_poll import HttpPolledFeed
from connectors.publication import default_stamp

log = logging.getLogger(__name__)


FredConfigT = TypeVar("FredConfigT", FredFeedConfig, FredCsvFeedConfig)


class _FredBase(HttpPolledFeed[FredConfigT]):
    async def poll(self) -> int:
        new = 0
        for series, canonical in self.symbols.items():
            new += await self._poll_series(series, canonical)
        return new

    async def _poll_series(self, series: str, canonical: str) -> int:
        raise NotImplementedError

    def _emit(self, series: str, canonical: str, rows: Iterable[tuple[Any, Any]]) -> int:
        """Emit (date text, value text) rows of one series, stamped when they became known."""
        stamp = self.cfg.stamps.get(series) or default_stamp(canonical)
        obs: list[tuple[str, float, float]] = []
        for day, raw in rows:
            if raw in (".", ""):
                self.health.dropped["missing_value"] += 1  # FRED's holiday marker: expected
                log.debug("feed %s: %s has no value on %s", self.name, series, day)
                continue
            try:
                d = day if isinstance(day, date) else date.fromisoformat(day)
                value = float(raw)
            except TypeError:
                self.validator.drop("missing_field", f"{series}: {day!r} {raw!r}")
                continue
            except ValueError:
                self.validator.drop("malformed", f"{series}: {day!r} {raw!r}")
                continue
            obs.append((canonical, self.stamp(canonical, d, stamp), value))
        return self.emit_new(obs)


class FredFeed(_FredBase[FredFeedConfig]):
    kind = "fred"

    def __init__(self, name: str, cfg: FredFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self._key = ""

    async def setup(self) -> None:
        key = os.environ.get(self.cfg.key_env, "")
        if not key:
            raise FeedSetupError(
                f"{self.cfg.key_env} is not set: get a free key at "
                "https://fred.stlouisfed.org/docs/api/api_key.html and export it"
            )
        self._key = key
        self.secrets = [key]
        await super().setup()

    async def _poll_series(self, series: str, canonical: str) -> int:
        params = {
            "series_id": series,
            "api_key": self._key,
            "file_type": "json",
            "sort_order": "desc",
            "limit": str(self.cfg.lookback),
        }
        body = await self.get(self.cfg.url, params, cache_key=f"{self.cfg.url}#{series}")
        if body is None:
            return 0
        try:
            observations: list[dict[str, Any]] = orjson.loads(body)["observations"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.validator.drop("malformed", f"{series}: not an observations document")
            raise PollError(f"malformed response for {series}") from None
        return self._emit(
            series, canonical, ((o.get("date"), o.get("value")) for o in observations)
        )


class FredCsvFeed(_FredBase[FredCsvFeedConfig]):
    """The keyless CSV download: the newest `lookback` observations of each series."""

    kind = "fred_csv"

    async def _poll_series(self, series: str, canonical: str) -> int:
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        since = today - timedelta(days=2 * self.cfg.lookback + 7)  # weekends and holidays
        body = await self.get(
            self.cfg.url,
            {"id": series, "cosd": since.isoformat()},
            cache_key=f"{self.cfg.url}#{series}",
        )
        if body is None:
            return 0
        try:
            rows = parse_fredgraph_csv(body.decode("utf-8", "replace"), series)
        except SourceFormatError as e:
            self.validator.drop("malformed", str(e))
            raise PollError(f"malformed response for {series}") from None
        return self._emit(series, canonical, rows[-self.cfg.lookback :])
