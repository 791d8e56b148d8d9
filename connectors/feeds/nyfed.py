"""New York Fed Markets API (keyless JSON): SOFR and the other reference rates.

``GET https://markets.newyorkfed.org/api/rates/secured/sofr/last/5.json`` answers
``{"refRates": [{"effectiveDate": "2024-06-06", "type": "SOFR", "percentRate": 5.33, ...}]}``.
SOFR for a date is published at about 08:00 New York on the next business day; that is the
time each value is stamped with.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from connectors.base import PollError
from connectors.config import NyFedFeedConfig
from connectors.http_poll import HttpPolledFeed


class NyFedFeed(HttpPolledFeed[NyFedFeedConfig]):
    kind = "nyfed"

    async def poll(self) -> int:
        body = await self.get(self.cfg.url.replace("{n}", str(self.cfg.lookback)))
        if body is None:
            return 0
        try:
            doc = orjson.loads(body)
            rates: list[dict[str, Any]] = doc["refRates"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.validator.drop("malformed", f"not a refRates document: {body[:80]!r}")
            raise PollError('malformed response (expected {"refRates": [...]})') from None
        obs: list[tuple[str, float, float]] = []
        for r in rates:
            canonical = self.symbols.get(str(r.get("type", "")).strip())
            if canonical is None:
                continue
            try:
                d = date.fromisoformat(r["effectiveDate"])
                value = float(r["percentRate"])
            except (KeyError, TypeError):
                self.validator.drop("missing_field", f"{str(r)[:100]}")
                continue
            except ValueError:
                self.validator.drop("malformed", f"{str(r)[:100]}")
                continue
            obs.append((canonical, self.stamp(canonical, d, self.cfg.stamp), value))
        return self.emit_new(obs)
