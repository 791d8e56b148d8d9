"""Alert charts: normalised moves of the series behind an alert, with the trigger marked.

Prices are shown in percent from the first point of the window, rates and spreads in basis
points (on a second axis when both appear). 800x500 px, readable on a phone. Rendering runs in
a worker thread (matplotlib is blocking) and uses the object API with the Agg canvas, never
pyplot, so concurrent renders do not share state.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from bot.core.errors import StressbotError
from bot.core.models import SYMBOLS, Alert, Kind

Points = Sequence[tuple[float, float]]
#: A renderer turns (alert, symbol -> points, display zone) into PNG bytes.
ChartRenderer = Callable[[Alert, Mapping[str, Points], str], bytes]


#: Colour-blind-friendly (Okabe-Ito) colours, distinct from the red trigger line.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")


class ChartError(StressbotError):
    """A chart could not be drawn; the alert is sent without it."""


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


def render_chart(alert: Alert, series: Mapping[str, Points], zone: str = "UTC") -> bytes:
    """Draw the chart for `alert` from `series` (symbol -> (ts, value) points)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    drawn = {s: p for s, p in series.items() if len(p) >= 2}
    if not drawn:
        raise ChartError(f"no data to chart for {', '.join(series) or 'this alert'}")
    tz = ZoneInfo(zone)
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = None
    units = {normalise(s, p)[2] for s, p in drawn.items()}
    for n, (sym, pts) in enumerate(drawn.items()):
        ts, moves, unit = normalise(sym, pts)
        x = [t / 86400.0 for t in ts]  # matplotlib dates: days since its 1970 epoch
        target = ax
        if unit == "bp" and len(units) > 1:
            if ax2 is None:
                ax2 = ax.twinx()
                ax2.set_ylabel("change (bp)")
            target = ax2
        # one colour per series across both axes (a twin axis would restart the cycle)
        target.plot(
            x, moves, label=f"{sym} ({unit})", linewidth=1.8, color=_PALETTE[n % len(_PALETTE)]
        )
    ax.set_ylabel("change (%)" if "%" in units else "change (bp)")
    trigger = alert.ts / 86400.0
    ax.axvline(trigger, color="crimson", linestyle="--", linewidth=1.5, label="trigger")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    fmt = DateFormatter("%m-%d %H:%M", tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(fmt)
    for lbl in ax.get_xticklabels():
        lbl.set_rotation(30)
        lbl.set_horizontalalignment("right")
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize=10)
    ax.set_title(f"{alert.rule} · {alert.severity} · times in {zone}", fontsize=12)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
