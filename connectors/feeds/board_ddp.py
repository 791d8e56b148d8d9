"""The Federal Reserve Board's Data Download Program (DDP), polled: IORB without any key.

``GET https://www.federalreserve.gov/datadownload/Output.aspx?rel=PRATES
&series=c27939ee810cb2e929a920a6bd77d9f6&lastobs=5&from=&to=&filetype=csv&label=include
&layout=seriescolumn&type=package`` answers the CSV read by
:func:`connectors.fred_format.parse_ddp_csv` (five label rows, a ``"Time Period"`` header
naming the series codes, one row a date). The policy-rates release PRATES carries IORB as
``RESBM_N.D``; the Board publishes it each business day at 4:30 p.m. New York for the next
business day, and a value is stamped at 00:00 New York of its effective date ("effective"),
or when first fetched if that is earlier. The same program serves H.15 yields and H.10 FX:
another `release`/`package` and symbol map reads them with this feed.

Failure modes: an HTML page (maintenance, a challenge) or a truncated body is a format error
(the poll fails, retried with backoff); 403/451 is "unavailable from this location"
(:class:`connectors.base.SourceUnavailable`, long wait); 429/5xx are retried honouring
Retry-After (:mod:`connectors.http_poll`).
"""

from __future__ import annotations

from connectors.base import PollError
from connectors.config import BoardDdpFeedConfig
from connectors.fred_format import SourceFormatError, parse_ddp_csv, parse_value
from connectors.http_poll import HttpPolledFeed
from connectors.publication import default_stamp


class BoardDdpFeed(HttpPolledFeed[BoardDdpFeedConfig]):
    kind = "board_ddp"

    def params(self) -> dict[str, str]:
        return {
            "rel": self.cfg.release,
            "series": self.cfg.package,
            "lastobs": str(self.cfg.lookback),
            "from": "",
            "to": "",
            "filetype": "csv",
            "label": "include",
            "layout": "seriescolumn",
            "type": "package",
        }

    async def poll(self) -> int:
        body = await self.get(self.cfg.url, self.params())
        if body is None:
            return 0
        try:
            table = parse_ddp_csv(body.decode("utf-8", "replace"), self.cfg.release)
        except SourceFormatError as e:
            self.validator.drop("malformed", str(e))
            raise PollError(str(e)[:300]) from None
        missing = [code for code in self.symbols if code not in table]
        if missing:
            raise PollError(
                f"Fed DDP {self.cfg.release}: no series {', '.join(missing)} in the package "
                f"(it has {', '.join(table)[:120]}); check `package` and the symbol codes"
            )
        obs: list[tuple[str, float, float]] = []
        for code, canonical in self.symbols.items():
            stamp = self.cfg.stamps.get(code) or default_stamp(canonical)
            for d, raw in table[code][-self.cfg.lookback :]:
                if not raw:
                    self.health.dropped["missing_value"] += 1  # holiday / not yet published
                    continue
                value = parse_value(raw)
                if value is None:
                    self.validator.drop("malformed", f"{code} on {d}: {raw[:40]!r}")
                    continue
                obs.append((canonical, self.stamp(canonical, d, stamp), value))
        return self.emit_new(obs)
