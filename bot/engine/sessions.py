"""Trading sessions defined in their own local time (IANA zones), and per-session returns.

A session such as Tokyo 09:00-16:00 is converted to UTC for each local calendar date, so
daylight saving time is followed where the session's city observes it and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.core.models import Kind
from bot.engine.config import SessionConfig
from bot.engine.series import Series

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    zone: ZoneInfo
    start: time
    end: time

    def window(self, day: date) -> tuple[float, float]:
        """The session of local date `day` as (start, end) epoch seconds."""
        s = datetime.combine(day, self.start, self.zone)
        e = datetime.combine(day, self.end, self.zone)
        if e <= s:  # a session that crosses local midnight ends the next day
            e = datetime.combine(day + timedelta(days=1), self.end, self.zone)
        return s.timestamp(), e.timestamp()


class _WindowTable:
    """A session's UTC windows by local date, computed once per date."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._by_ordinal: dict[int, tuple[float, float]] = {}
        # lookback -> (valid from, valid until, version, windows)
        self._cache: dict[float, tuple[float, float, int, list[tuple[int, float, float]]]] = {}
        self._version = 0

    def _window(self, o: int) -> tuple[float, float]:
        w = self._by_ordinal.get(o)
        if w is None:
            w = self._by_ordinal[o] = self.session.window(date.fromordinal(o))
        return w

    def windows(self, now: float, lookback: float) -> tuple[int, list[tuple[int, float, float]]]:
        """(version, windows) of the sessions begun in (now - lookback, now].

        The answer is cached until the next instant it can change: a session starts or ends,
        or the oldest one leaves the lookback. `version` changes whenever the answer does.
        """
        c = self._cache.get(lookback)
        if c is not None and c[0] <= now < c[1]:
            return c[2], c[3]
        lo = now - lookback
        # A local date is within a day of the UTC date, so scan one day wider on each side.
        first = _EPOCH_ORDINAL + int(lo // DAY) - 1
        last = _EPOCH_ORDINAL + int(now // DAY) + 2
        out = []
        until = now + 2 * DAY
        for o in range(first, last + 1):
            s, e = self._window(o)
            if lo < s <= now:
                out.append((o, s, e))
                until = min(until, s + lookback)
                if e > now:
                    until = min(until, e)
            elif s > now:
                until = min(until, s)
        self._version += 1
        self._cache[lookback] = (now, until, self._version, out)
        return self._version, out


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class SessionReturns:
    """Sums of a symbol's percent returns within one session over a lookback of days.

    Returns of sessions that have ended are cached, but only as a memo: each entry remembers
    the series' `edits` counter, so a late tick, a correction, compaction, trimming or a new
    gap (anything but an append after the last evaluation) recomputes them. A cold cache and a
    warm one give the same answer; the cache is not part of the engine's snapshot.
    """

    def __init__(self, sessions: dict[str, Session]) -> None:
        self.sessions = sessions
        self._tables = {name: _WindowTable(s) for name, s in sessions.items()}
        # (symbol, session, local date) -> (series edits, return)
        self._done: dict[tuple[str, str, int], tuple[int, float | None]] = {}
        # (symbol, session, lookback) -> (windows version, series edits, sum of ended, known)
        self._ended: dict[tuple[str, str, float], tuple[int, int, float, bool]] = {}

    def windows(self, session: str, now: float, lookback: float) -> list[tuple[float, float]]:
        """(start, end) of `session`'s windows begun in (now - lookback, now], oldest first
        (the cached table `sum` reads)."""
        return [(s, e) for _, s, e in self._tables[session].windows(now, lookback)[1]]

    def sum(self, series: Series, session: str, now: float, lookback: float) -> float | None:
        """Sum of percent returns of `series` in `session` over sessions begun in the lookback."""
        version, wins = self._tables[session].windows(now, lookback)
        key = (series.symbol, session, lookback)
        edits = series.edits
        cached = self._ended.get(key)
        if cached is not None and cached[0] == version and cached[1] == edits:
            _, _, total, seen = cached
        else:
            total, seen = 0.0, False
            for day, s, e in wins:
                if e <= now:
                    dkey = (series.symbol, session, day)
                    done = self._done.get(dkey)
                    if done is not None and done[0] == edits:
                        r = done[1]
                    else:
                        r = _ret(series, s, e)
                        self._done[dkey] = (edits, r)
                    if r is not None:
                        total += r
                        seen = True
            self._ended[key] = (version, edits, total, seen)
        if wins and wins[-1][2] > now:  # the session under way counts up to now
            r = _ret(series, wins[-1][1], now)
            if r is not None:
                total += r
                seen = True
        return total if seen else None

    def forget_before(self, t: float) -> None:
        """Drop cached returns and windows of sessions older than `t` (bounded memory)."""
        cutoff = _EPOCH_ORDINAL + int(t // DAY) - 1
        for k in [k for k in self._done if k[2] < cutoff]:
            del self._done[k]
        for table in self._tables.values():
            for o in [o for o in table._by_ordinal if o < cutoff]:
                del table._by_ordinal[o]


def _ret(series: Series, start: float, end: float) -> float | None:
    a = series.value_at(start)
    b = series.value_at(end)
    if a is None or b is None:
        return None
    return (b / a - 1.0) * 100.0


def session_moves(
    points: list[tuple[float, float]], sessions: dict[str, Session], now: float, days: float
) -> dict[str, float | None]:
    """Per-session percent moves of one series over the last `days` days (for /status)."""
    s = Series("x", Kind.PRICE)
    for t, v in sorted(points):
        s.add(t, v)
    sr = SessionReturns(sessions)
    return {name: sr.sum(s, name, now, days * DAY) for name in sessions}


def sessions_from_config(cfg: Mapping[str, SessionConfig]) -> dict[str, Session]:
    """Build Session objects from the config's `[sessions.*]` tables."""
    return {n: Session(n, ZoneInfo(c.zone), c.start, c.end) for n, c in cfg.items()}
