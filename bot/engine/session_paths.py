"""The session split of a price series as paths: cumulative percent return per session.

The chart the sell-America thesis rests on: the dollar index's returns summed separately over
the Asian, European and New York sessions of the last N days, one line per session. Each
session's windows come from :meth:`bot.engine.sessions.Session.window` (local time, IANA
zones, DST-aware), and a session's return is the same as the engine's ``session_ret`` reads:
the value known at the session's end (or now, for the session under way) over the value known
at its start, minus one, in percent. Returns are summed, not compounded, so the last point of
each path is exactly what ``session_ret(SYMBOL, SESSION, "<days>d")`` gives at `now`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from bot.core.models import Kind
from bot.engine.series import Series
from bot.engine.sessions import DAY, Session

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class SessionPath:
    """One session's cumulative return: (session end or now, cumulative %) per session held."""

    name: str
    points: list[tuple[float, float]]
    sessions: int  # sessions begun in the lookback
    known: int  # of which with a known return (values at both ends)

    @property
    def total(self) -> float | None:
        return self.points[-1][1] if self.points else None


def windows_begun(session: Session, now: float, lookback: float) -> list[tuple[float, float]]:
    """(start, end) of the sessions begun in (now - lookback, now], oldest first."""
    lo = now - lookback
    # a local date is within a day of the UTC date: scan one day wider on each side
    first = _EPOCH_ORDINAL + int(lo // DAY) - 1
    last = _EPOCH_ORDINAL + int(now // DAY) + 1
    out = []
    for o in range(first, last + 1):
        s, e = session.window(date.fromordinal(o))
        if lo < s <= now:
            out.append((s, e))
    return out


def session_paths(
    series: Series | Sequence[tuple[float, float]],
    sessions: Mapping[str, Session],
    now: float,
    days: float,
) -> dict[str, SessionPath]:
    """Per session, the cumulative percent return of `series` over the sessions begun in the
    last `days` days up to `now` (a session without a value at either end adds nothing)."""
    if not isinstance(series, Series):
        s = Series("x", Kind.PRICE)
        for t, v in sorted(series):
            s.add(t, v)
        series = s
    out = {}
    for name, session in sessions.items():
        wins = windows_begun(session, now, days * DAY)
        total, known, pts = 0.0, 0, []
        for start, end in wins:
            end = min(end, now)
            a, b = series.value_at(start), series.value_at(end)
            if a is None or b is None or a == 0:
                continue
            total += (b / a - 1.0) * 100.0
            known += 1
            pts.append((end, total))
        out[name] = SessionPath(name, pts, len(wins), known)
    return out
