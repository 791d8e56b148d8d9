"""FRED `series/observations` (JSON), with an API key from the environment.

``GET https://api.stlouisfed.org/fred/series/observations?series_id=DGS10&api_key=...
&file_type=json&sort_order=desc&limit=5`` answers ``{"observations": [{"date": "2024-06-03",
"value": "5.35"}, ...]}``; values are strings and ``"."`` marks a day without a value
(holiday). The key is never logged: errors are redacted before they are shown.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from typing import Any

import orjson

from connectors.base import FeedContext, FeedSetupError, PollError
from connectors.config import FredFeedConfig
from connectors.http_poll import HttpPolledFeed, default_stamp

log = logging.getLogger(__name__)


class FredFeed(HttpPolledFeed):
    kind = "fred"

    def __init__(self, name: str, cfg: FredFeedConfig, ctx: FeedContext) -> None:
        super().__init__(name, cfg.symbols, cfg.max_future, cfg.max_past, ctx, cfg.interval,
                         cfg.timeout)
        self.cfg = cfg
        self.max_idle = cfg.max_idle
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

    async def poll(self) -> int:
        new = 0
        for series, canonical in self.symbols.items():
            new += await self._poll_series(series, canonical)
        return new

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
        stamp = self.cfg.stamps.get(series) or default_stamp(canonical)
        obs: list[tuple[str, float, float]] = []
        for o in observations:
            raw = o.get("value")
            if raw == ".":
                self.health.dropped["missing_value"] += 1  # FRED's holiday marker: expected
                log.debug("feed %s: %s has no value on %s", self.name, series, o.get("date"))
                continue
            try:
                d = date.fromisoformat(o["date"])
                value = float(raw)  # type: ignore[arg-type]
            except (KeyError, TypeError):
                self.validator.drop("missing_field", f"{series}: {str(o)[:100]}")
                continue
            except ValueError:
                self.validator.drop("malformed", f"{series}: {str(o)[:100]}")
                continue
            obs.append((canonical, self.stamp(canonical, d, stamp), value))
        return self.emit_new(obs)
