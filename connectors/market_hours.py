"""When markets trade, so that a quiet closed market is not mistaken for a stalled feed.

- "always": crypto venues and tokenised gold, 24x7.
- "fx": the FX week, Sunday 17:00 to Friday 17:00 New York time (follows US DST), closed on
  the configured holidays (by default 25 December and 1 January, New York dates).
- "metals": spot gold/silver, the FX week plus the daily 17:00-18:00 New York halt.

All functions take and return epoch seconds (UTC); the rules are written in the market's own
zone (IANA), so daylight saving needs no special cases.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from connectors.config import MarketHoursConfig, Schedule

_ROLL_HOUR = 17  # New York: the FX day ends (and the week ends on Friday) at 17:00


class MarketHours:
    def __init__(self, config: MarketHoursConfig | None = None) -> None:
        cfg = config or MarketHoursConfig()
        self.zone = ZoneInfo(cfg.zone)
        self._every_year: set[tuple[int, int]] = set()
        self._dates: set[date] = set()
        for h in cfg.holidays:
            parts = h.split("-")
            if len(parts) == 2:
                self._every_year.add((int(parts[0]), int(parts[1])))
            else:
                self._dates.add(date.fromisoformat(h))

    def _holiday(self, d: date) -> bool:
        return d in self._dates or (d.month, d.day) in self._every_year

    def is_open(self, schedule: Schedule, ts: float) -> bool:
        if schedule == "always":
            return True
        local = datetime.fromtimestamp(ts, self.zone)
        wd = local.weekday()  # Monday 0 .. Sunday 6
        h = local.hour
        if wd == 5 or (wd == 4 and h >= _ROLL_HOUR) or (wd == 6 and h < _ROLL_HOUR):
            return False
        # A holiday closes the trading day that carries its date (17:00 the evening before to
        # 17:00 on the day). The trading day after 17:00 belongs to the next calendar date.
        trading_day = local.date() + timedelta(days=1) if h >= _ROLL_HOUR else local.date()
        if self._holiday(trading_day):
            return False
        return not (schedule == "metals" and h == _ROLL_HOUR)

    def open_since(self, schedule: Schedule, ts: float, step: float = 900.0) -> float | None:
        """When the current open period began (at or before `ts`), or None if closed now.

        Searched backwards in `step` increments (closures start and end on the hour), at most
        a week back; a market open that whole week returns the start of the search.
        """
        if not self.is_open(schedule, ts):
            return None
        if schedule == "always":
            return float("-inf")
        t = ts - (ts % step)
        limit = ts - 8 * 86400
        while t > limit:
            if not self.is_open(schedule, t - step):
                return t
            t -= step
        return limit
