"""Alert charts a trader reads on a phone, drawn from the points the alert carries.

Layout (800x600 px):

- title: the alert's summary; under it the trigger's date and time with year and time zone
  (``Thu 12 Mar 2020 14:00 CET (Europe/Zurich)``), the severity and the rule;
- one normalised axis for every price (percent from the window's first point), and a separate
  small panel beneath it for yields, rates and spreads (change in basis points), so no two
  series share an axis with different zeros;
- the trigger as a dashed line on both panels, each series' point there marked, and its move
  and level at the trigger in the legend, with units;
- a series whose points are a day or more apart (closes, fixings) drawn as steps with its
  observations as dots, held (dotted) from its last observation to the trigger: the chart shows
  what was known when the rule fired, not a line invented between two closes;
- the x axis in the display zone, named under it.

:func:`render_session_chart` draws the session split of the dollar (one line per session).

Rendering runs in a worker thread (matplotlib is blocking) and uses the object API with the
Agg canvas, never pyplot, so concurrent renders share no state (matplotlib's "Embedding in a
web application server" guide: create ``Figure`` directly, not through pyplot). Margins are
fixed instead of ``tight_layout`` (which draws the figure once more to measure it) and the
legend sits above the plot in two columns (never over the lines, unlike an in-axes legend, and
without ``loc="best"``'s scan of every point), to keep a chart cheap (bench/bench_delivery.py,
"drain with charts").
"""

from __future__ import annotations

import io
import itertools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from statistics import median
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.core.errors import StressbotError
from bot.core.models import CHART_SPAN, SYMBOLS, Alert, Kind

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Points = Sequence[tuple[float, float]]
#: A renderer turns (alert, symbol -> points, display zone) into PNG bytes.
ChartRenderer = Callable[[Alert, Mapping[str, Points], str], bytes]

#: Colour-blind-friendly (Okabe-Ito) colours, distinct from the red trigger line.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
TRIGGER_COLOUR = "crimson"
#: A series whose median spacing is at least this is drawn as steps with dots (daily data).
SPARSE_SPACING = 12 * 3600.0
WIDTH, HEIGHT = 800, 600  # px at 100 dpi: a phone screen wide, legend above the plot
HEADER_PX = 88  # two title lines and the subtitle
LEGEND_ROW_PX = 19
TITLE_WIDTH = 58  # characters per title line at 13 pt on 800 px
DAY = 86400.0


class ChartError(StressbotError):
    """A chart could not be drawn; the alert is sent without it."""


def unit_of(symbol: str) -> str:
    """'%' for prices (percent change), 'bp' for yields, rates and spreads."""
    return "%" if SYMBOLS.get(symbol, Kind.PRICE) is Kind.PRICE else "bp"


def normalise(symbol: str, points: Points) -> tuple[list[float], list[float], str]:
    """(times, moves, unit): percent from the first point for prices, basis points otherwise."""
    kind = SYMBOLS.get(symbol, Kind.PRICE)
    if not points:
        return [], [], "%"
    _t0, v0 = points[0]
    ts = [t for t, _ in points]
    if kind is Kind.PRICE:
        if v0 == 0:
            return ts, [0.0 for _ in points], "%"
        return ts, [(v / v0 - 1.0) * 100.0 for _, v in points], "%"
    scale = 100.0 if kind is Kind.RATE else 1.0
    return ts, [(v - v0) * scale for _, v in points], "bp"


def spacing(ts: Sequence[float]) -> float:
    """The median time between consecutive points (0 for fewer than two)."""
    if len(ts) < 2:
        return 0.0
    return float(median(b - a for a, b in itertools.pairwise(ts)))


def is_sparse(ts: Sequence[float]) -> bool:
    """Daily (or sparser) data: closes and fixings, drawn as steps with dots."""
    return spacing(ts) >= SPARSE_SPACING


def when_text(ts: float, zone: str) -> str:
    """'Thu 12 Mar 2020 14:00 CET (Europe/Zurich)': a date a person reads, year and zone given."""
    dt = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(zone))
    text = dt.strftime("%a %d %b %Y %H:%M %Z")
    return text if zone == "UTC" else f"{text} ({zone})"


def fmt_level(symbol: str, value: float) -> str:
    """A level with its unit: yields and rates in percent, spreads in bp, prices plain."""
    kind = SYMBOLS.get(symbol, Kind.PRICE)
    if kind is Kind.RATE:
        return f"{value:.2f}%"
    if kind is Kind.SPREAD_BP:
        return f"level {value:+.1f} bp"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.2f}"
    return f"{value:.4f}"


def fmt_move(move: float, unit: str) -> str:
    return f"{move:+.2f}%" if unit == "%" else f"{move:+.0f} bp"


def value_at(points: Points, t: float) -> tuple[float, float] | None:
    """The newest (ts, value) at or before `t` (what was known then)."""
    best = None
    for p in points:
        if p[0] <= t:
            best = p
        else:
            break
    return best


def clip(points: Points, start: float) -> list[tuple[float, float]]:
    """The points from `start` on, beginning with the value known at `start` (stamped then)."""
    pts = list(points)
    i = 0
    while i + 1 < len(pts) and pts[i + 1][0] <= start:
        i += 1
    out = pts[i:]
    if out and out[0][0] < start:
        out[0] = (start, out[0][1])
    return out


def title_lines(summary: str, width: int = TITLE_WIDTH, lines: int = 2) -> str:
    wrapped = textwrap.wrap(summary, width) or [""]
    if len(wrapped) > lines:
        wrapped = [
            *wrapped[: lines - 1],
            textwrap.shorten(" ".join(wrapped[lines - 1 :]), width, placeholder=" …"),
        ]
    return "\n".join(wrapped)


def _x(t: float) -> float:
    return t / DAY  # matplotlib dates: days since its 1970 epoch


def _figure(with_bp: bool, entries: int) -> tuple[Figure, Axes, Axes | None]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH / 100, HEIGHT / 100), dpi=100)
    FigureCanvasAgg(fig)
    if with_bp:
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        bp = fig.add_subplot(grid[1], sharex=ax)
        ax.tick_params(labelbottom=False)
    else:
        ax, bp = fig.add_subplot(1, 1, 1), None
    rows = (entries + 1) // 2
    top = 1.0 - (HEADER_PX + rows * LEGEND_ROW_PX + 12) / HEIGHT
    fig.subplots_adjust(left=0.1, right=0.97, top=top, bottom=0.1)
    return fig, ax, bp


def _legend(fig: Figure, axes: Sequence[Axes | None]) -> None:
    """One legend for every panel, in two columns between the header and the plot."""
    handles: list[Any] = []
    labels: list[str] = []
    for a in axes:
        if a is not None:
            h, lab = a.get_legend_handles_labels()
            handles += h
            labels += lab
    top = 1.0 - HEADER_PX / HEIGHT
    fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(0.01, top),
        ncol=2,
        fontsize=9.5,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.2,
        borderaxespad=0.2,
    )


def _header(fig: Figure, title: str, subtitle: str) -> None:
    fig.text(0.02, 0.975, title, fontsize=13, fontweight="bold", va="top", ha="left")
    fig.text(0.02, 1.0 - 64 / HEIGHT, subtitle, fontsize=10, color="#444444", va="top", ha="left")


def _time_axis(ax: Axes, zone: str, t_ref: float) -> None:
    from matplotlib.dates import AutoDateLocator, DateFormatter

    tz = ZoneInfo(zone)
    lo, hi = ax.get_xlim()
    fmt = "%d %b" if hi - lo > 3 else "%d %b %H:%M" if hi - lo > 1 else "%H:%M"
    locator = AutoDateLocator(tz=tz, minticks=3, maxticks=6)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(DateFormatter(fmt, tz=tz))  # type: ignore[no-untyped-call]
    abbr = datetime.fromtimestamp(t_ref, UTC).astimezone(tz).strftime("%Z")
    ax.set_xlabel(f"time in {zone}" + (f" ({abbr})" if abbr and abbr != zone else ""))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _draw_series(ax: Axes, sym: str, pts: Points, colour: str, trigger: float, end: float) -> None:
    ts, moves, unit = normalise(sym, pts)
    x = [_x(t) for t in ts]
    sparse = is_sparse(ts)
    at = value_at(pts, trigger)
    label = f"{sym} ({unit})"
    if at is not None:
        k = [t for t, _ in pts].index(at[0])
        move = moves[k]
        label = f"{sym} {fmt_move(move, unit)} · {fmt_level(sym, at[1])}"
        if sparse:
            when = datetime.fromtimestamp(at[0], UTC).strftime("%d %b")
            label += f" (daily, last {when})"
        ax.plot([_x(trigger)], [move], marker="o", markersize=7, color=colour, zorder=5)
    elif sparse:
        label += " (daily)"
    if sparse:
        ax.plot(
            x,
            moves,
            drawstyle="steps-post",
            marker="o",
            markersize=3.5,
            linewidth=1.8,
            color=colour,
            label=label,
        )
        if ts[-1] < end:  # held from the last close to the end of the chart
            ax.plot(
                [x[-1], _x(end)], [moves[-1], moves[-1]], linestyle=":", linewidth=1.5, color=colour
            )
    else:  # broken where the data is (weekends, outages), not a line across the hole
        gap = max(SPARSE_SPACING, 8 * spacing(ts))
        xs, ys = [x[0]], [moves[0]]
        for i in range(1, len(ts)):
            if ts[i] - ts[i - 1] > gap:
                xs.append(float("nan"))
                ys.append(float("nan"))
            xs.append(x[i])
            ys.append(moves[i])
        ax.plot(xs, ys, linewidth=1.8, color=colour, label=label)


def _trigger(ax: Axes, trigger: float) -> None:
    ax.axvline(_x(trigger), color=TRIGGER_COLOUR, linestyle="--", linewidth=1.4)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.grid(True, alpha=0.3)


def render_chart(alert: Alert, series: Mapping[str, Points], zone: str = "UTC") -> bytes:
    """Draw the chart for `alert` from `series` (symbol -> (ts, value) points) as PNG."""
    return _png(chart_figure(alert, series, zone))


def chart_figure(alert: Alert, series: Mapping[str, Points], zone: str = "UTC") -> Figure:
    """The figure of :func:`render_chart` (tests read its texts and lines)."""
    trigger = alert.ts
    first = min((p[0][0] for p in series.values() if p), default=trigger)
    start = max(first, trigger - CHART_SPAN)
    drawn = {s: c for s, p in series.items() if len(c := clip(p, start)) >= 2}
    if not drawn:
        raise ChartError(f"no data to chart for {', '.join(series) or 'this alert'}")
    ZoneInfo(zone)  # an unknown zone fails here, before any drawing
    prices = {s: p for s, p in drawn.items() if unit_of(s) == "%"}
    rates = {s: p for s, p in drawn.items() if unit_of(s) == "bp"}
    fig, ax, bp = _figure(bool(prices) and bool(rates), len(drawn))
    end = max(trigger, max(p[-1][0] for p in drawn.values()))
    colours = {s: _PALETTE[n % len(_PALETTE)] for n, s in enumerate(drawn)}
    panels: list[tuple[Axes, dict[str, list[tuple[float, float]]], str]] = []
    since = datetime.fromtimestamp(start, UTC).astimezone(ZoneInfo(zone)).strftime("%d %b")
    if prices:
        panels.append((ax, prices, f"change since {since} (%)"))
    if rates:
        panels.append((bp if bp is not None else ax, rates, "change (bp)"))
    for target, group, ylabel in panels:
        for sym, pts in group.items():
            _draw_series(target, sym, pts, colours[sym], trigger, end)
        _trigger(target, trigger)
        target.set_ylabel(ylabel)
    _legend(fig, (ax, bp))
    bottom = bp if bp is not None else ax
    bottom.set_xlim(_x(start), _x(end) + (_x(end) - _x(start)) * 0.015)
    _time_axis(bottom, zone, trigger)
    ax.annotate(
        "trigger",
        (_x(trigger), 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-4, -4),
        textcoords="offset points",
        ha="right",
        va="top",
        fontsize=9,
        color=TRIGGER_COLOUR,
    )
    title = alert.summary or ", ".join(drawn)
    sub = [when_text(trigger, zone)]
    if alert.rule != "chart":
        sub += [alert.severity.upper(), alert.rule]
    _header(fig, title_lines(title), " · ".join(sub))
    return fig


def render_session_chart(
    lines: Sequence[tuple[str, Points]],
    zone: str,
    *,
    title: str,
    now: float,
    subtitle: str = "",
    rates: Mapping[str, Points] | None = None,
) -> bytes:
    """PNG of :func:`session_figure`."""
    return _png(session_figure(lines, zone, title=title, now=now, subtitle=subtitle, rates=rates))


def session_figure(
    lines: Sequence[tuple[str, Points]],
    zone: str,
    *,
    title: str,
    now: float,
    subtitle: str = "",
    rates: Mapping[str, Points] | None = None,
) -> Figure:
    """One line per session: the cumulative percent return summed over that session's hours
    (`lines`: (label, (session end, cumulative %)) in order); `rates` (symbol -> points) go to
    a small basis-point panel beneath, as in :func:`render_chart`."""
    drawn = [(label, list(p)) for label, p in lines if p]
    if not drawn:
        raise ChartError("no session returns to chart (no dollar index data in the sessions)")
    ZoneInfo(zone)
    bp_series = {s: list(p) for s, p in (rates or {}).items() if len(p) >= 2}
    fig, ax, bp = _figure(bool(bp_series), len(drawn) + len(bp_series))
    for n, (label, pts) in enumerate(drawn):
        x = [_x(t) for t, _ in pts]
        y = [v for _, v in pts]
        colour = _PALETTE[n % len(_PALETTE)]
        ax.plot(
            x,
            y,
            marker="o",
            markersize=3.5,
            linewidth=2.0,
            color=colour,
            label=f"{label}: {y[-1]:+.2f}%",
        )
    start = min(p[0][0] for _, p in drawn)
    _trigger(ax, now)
    ax.set_ylabel("cumulative return (%)")
    if bp is not None:
        for n, (sym, pts) in enumerate(bp_series.items()):
            colour = _PALETTE[(n + len(drawn)) % len(_PALETTE)]
            _draw_series(bp, sym, pts, colour, now, now)
            start = min(start, pts[0][0])
        _trigger(bp, now)
        bp.set_ylabel("change (bp)")
    _legend(fig, (ax, bp))
    bottom = bp if bp is not None else ax
    bottom.set_xlim(_x(start), _x(now) + 0.1)
    _time_axis(bottom, zone, now)
    _header(fig, title_lines(title), subtitle or when_text(now, zone))
    return fig
