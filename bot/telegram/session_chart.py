"""The session dollar chart: the dollar index's cumulative return per trading session.

One line per configured session (``[sessions]``: Asia, Europe, New York by default, each in its
own local time and DST), from :func:`bot.engine.session_paths.session_paths`, drawn by
:func:`bot.notify.chart.render_session_chart`. Used by ``/sessions [DAYS]``, by
``stressbot sessions`` and ``stressbot report``, and attached to ``session_dollar`` alerts by
:func:`alert_renderer` (built where the config is at hand: the notifier's composition roots).

It lives here, not in ``bot.notify``, because it needs both the engine's sessions and the
notifier's drawing, and ``bot.telegram`` is the lowest layer allowed both (ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.core.models import Alert, Pattern
from bot.engine.config import SessionConfig
from bot.engine.session_paths import SessionPath, session_paths
from bot.engine.sessions import DAY, Session, sessions_from_config
from bot.notify.chart import (
    ChartRenderer,
    Points,
    clip,
    render_chart,
    render_session_chart,
    when_text,
)

#: Symbols tried for the dollar, in order (the engine's USDX first, a feed's DXY otherwise).
DOLLAR_SYMBOLS = ("USDX", "DXY")
#: The yield shown in the small bp panel under the session lines, when present.
RATE_SYMBOL = "US10Y"
DEFAULT_DAYS = 10.0

_NAMES = {"asia": "Asia", "europe": "Europe", "us": "New York"}


def session_label(name: str, session: Session) -> str:
    """'Asia (09:00-16:00 Asia/Tokyo)'."""
    shown = _NAMES.get(name, name)
    return f"{shown} ({session.start:%H:%M}-{session.end:%H:%M} {session.zone.key})"


def lines_of(
    paths: Mapping[str, SessionPath], sessions: Mapping[str, Session], start: float
) -> list[tuple[str, Points]]:
    """Each path from 0 at `start` (the lookback's beginning), labelled with its hours."""
    return [
        (session_label(n, sessions[n]), [(start, 0.0), *p.points] if p.points else [])
        for n, p in paths.items()
    ]


def draw_sessions(
    dollar: str,
    points: Sequence[tuple[float, float]],
    sessions: Mapping[str, Session],
    *,
    now: float,
    days: float,
    zone: str,
    title: str | None = None,
    subtitle: str | None = None,
    rates: Mapping[str, Points] | None = None,
) -> tuple[bytes, dict[str, SessionPath]]:
    """(PNG, paths) of `dollar`'s session split over the `days` days up to `now`."""
    paths = session_paths(points, sessions, now, days)
    start = now - days * DAY
    default_title = f"{dollar} by session: cumulative return over {days:g} days"
    png = render_session_chart(
        lines_of(paths, sessions, start),
        zone,
        title=title or default_title,
        now=now,
        subtitle=subtitle or f"up to {when_text(now, zone)} · returns summed per session",
        rates={s: clip(p, start) for s, p in (rates or {}).items()},
    )
    return png, paths


def summary_line(paths: Mapping[str, SessionPath]) -> str:
    """'Asia -1.20% · Europe -0.85% · New York +0.10%' (n/a for a session without data)."""
    parts = []
    for name, p in paths.items():
        total = p.total
        shown = _NAMES.get(name, name)
        parts.append(f"{shown} n/a" if total is None else f"{shown} {total:+.2f}%")
    return " · ".join(parts)


def alert_days(alert: Alert) -> float:
    """The days a session alert sums over: its window less the day ``session_ret`` looks back
    beyond its window (a session may start before it: bot/engine/rulelang.py), so the chart's
    last points are the alert's own session values."""
    if alert.window > DAY:
        return alert.window / DAY - 1.0
    return DEFAULT_DAYS


def alert_renderer(
    sessions: Mapping[str, SessionConfig], fallback: ChartRenderer = render_chart
) -> ChartRenderer:
    """A chart renderer that draws a ``session_dollar`` alert as the session chart (from the
    dollar points the alert carries, over its window) and every other alert with `fallback`."""
    built = sessions_from_config(sessions)

    def render(alert: Alert, series: Mapping[str, Points], zone: str) -> bytes:
        if alert.pattern == Pattern.SESSION_DOLLAR:
            for sym in DOLLAR_SYMBOLS:
                pts = series.get(sym, ())
                if len(pts) >= 2:
                    days = alert_days(alert)
                    rate = {RATE_SYMBOL: series[RATE_SYMBOL]} if RATE_SYMBOL in series else {}
                    sub = f"{when_text(alert.ts, zone)} · {alert.severity.upper()} · {alert.rule}"
                    png, _ = draw_sessions(
                        sym,
                        pts,
                        built,
                        now=alert.ts,
                        days=days,
                        zone=zone,
                        title=alert.summary,
                        subtitle=sub,
                        rates=rate,
                    )
                    return png
        return fallback(alert, series, zone)

    return render
