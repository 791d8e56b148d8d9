"""The replay report's timeline figure: price paths, VIX, yields, the stress score, alerts.

Four panels on one time axis (1400x1000 px): the watched prices normalised to percent from
their first point in the files (daily closes as steps with dots, like the alert charts of
:mod:`bot.notify.chart`), the VIX level, yields and SOFR-IORB as changes in basis points, and
the stress score (0-100) beneath them. Every alert is a vertical line on every panel,
numbered at the top as in the report's alert table (colour by severity; resolved alerts
dotted grey). Drawn with matplotlib's object API on the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.core.models import Alert, AlertKind
from bot.notify.chart import is_sparse, normalise

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Points = Sequence[tuple[float, float]]
DAY = 86400.0
PRICES = ("BTC/USD", "XAU/USD", "XAG/USD", "SPX", "NDX", "N225", "USDX", "DXY")
VOLATILITY = ("VIX",)
RATES = ("US2Y", "US10Y", "US30Y", "SOFR-IORB")
NAMES = {
    "BTC/USD": "Bitcoin",
    "XAU/USD": "gold",
    "XAG/USD": "silver",
    "SPX": "S&P 500",
    "NDX": "Nasdaq 100",
    "N225": "Nikkei 225",
    "USDX": "dollar index (USDX)",
    "DXY": "DXY",
    "VIX": "VIX",
    "US2Y": "US 2y",
    "US10Y": "US 10y",
    "US30Y": "US 30y",
    "SOFR-IORB": "SOFR-IORB",
}
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999933")
SEVERITY_COLOURS = {"critical": "#C0392B", "warning": "#E67E22", "info": "#2E86C1"}
SCORE_ALARM = 80.0


def _x(t: float) -> float:
    return t / DAY


def _line(ax: Axes, ts: Sequence[float], ys: Sequence[float], colour: str, label: str) -> None:
    x = [_x(t) for t in ts]
    if is_sparse(ts):
        ax.plot(x, ys, drawstyle="steps-post", marker="o", markersize=2.5, linewidth=1.4,
                color=colour, label=f"{label} (daily)")  # fmt: skip
    else:
        ax.plot(x, ys, linewidth=1.3, color=colour, label=label)


def _mark_alerts(axes: Sequence[Axes], alerts: Sequence[Alert]) -> None:
    for n, a in enumerate(alerts, 1):
        resolved = a.kind is AlertKind.RESOLVED
        colour = "#888888" if resolved else SEVERITY_COLOURS.get(a.severity, "#2E86C1")
        for ax in axes:
            ax.axvline(_x(a.ts), color=colour, linestyle=":" if resolved else "--",
                       linewidth=1.0 if resolved else 1.4, alpha=0.9)  # fmt: skip
        axes[0].annotate(str(n), (_x(a.ts), 1.0), xycoords=("data", "axes fraction"),
                         xytext=(0, 2 + 11 * (n % 3)), textcoords="offset points", ha="center",
                         va="bottom", fontsize=9, fontweight="bold", color=colour)  # fmt: skip


def timeline_figure(
    paths: Mapping[str, Points],
    alerts: Sequence[Alert],
    score: Points | None,
    zone: str,
    *,
    score_gap: str = "",
) -> Figure:
    """The timeline of a replay (see the module docstring). `score` None: the score panel
    says `score_gap` instead of a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 10), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 1, height_ratios=(4, 1.3, 1.6, 1.6), hspace=0.12)
    ax = fig.add_subplot(grid[0])
    vix, rates, stress = (fig.add_subplot(grid[i], sharex=ax) for i in (1, 2, 3))
    fig.subplots_adjust(left=0.06, right=0.8, top=0.94, bottom=0.06)
    n = 0
    for sym in PRICES:
        pts = paths.get(sym, ())
        if len(pts) >= 2:
            ts, moves, _ = normalise(sym, pts)
            _line(ax, ts, moves, _PALETTE[n % len(_PALETTE)], NAMES.get(sym, sym))
            n += 1
    ax.set_ylabel("change from the first point (%)")
    for sym in VOLATILITY:
        pts = paths.get(sym, ())
        if len(pts) >= 2:
            _line(vix, [t for t, _ in pts], [v for _, v in pts], "#6C3483", NAMES[sym])
    vix.set_ylabel("VIX (level)")
    for k, sym in enumerate(RATES):
        pts = paths.get(sym, ())
        if len(pts) >= 2:
            ts, moves, _ = normalise(sym, pts)
            _line(rates, ts, moves, _PALETTE[(k + 4) % len(_PALETTE)], NAMES.get(sym, sym))
    rates.set_ylabel("change (bp)")
    if score:
        xs = [_x(t) for t, _ in score]
        ys = [v for _, v in score]
        stress.plot(xs, ys, color="#7D3C98", linewidth=1.5, label="stress score")
        stress.fill_between(xs, ys, 0, color="#7D3C98", alpha=0.15)
        stress.axhline(SCORE_ALARM, color="#C0392B", linestyle=":", linewidth=1.0,
                       label=f"{SCORE_ALARM:.0f}")  # fmt: skip
    else:
        stress.text(0.5, 0.5, score_gap or "stress score not available", ha="center",
                    va="center", transform=stress.transAxes, fontsize=11, color="#7D3C98",
                    bbox={"boxstyle": "round", "fc": "#F5EEF8", "ec": "#7D3C98"})  # fmt: skip
    stress.set_ylim(0, 100)
    stress.set_ylabel("stress (0-100)")
    panels = (ax, vix, rates, stress)
    for p in panels:
        p.axhline(0.0, color="grey", linewidth=0.6)
        p.grid(True, alpha=0.3)
        if p.get_legend_handles_labels()[0]:
            p.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False)
        if p is not stress:
            p.tick_params(labelbottom=False)
    _mark_alerts(panels, alerts)
    tz = ZoneInfo(zone)
    locator = AutoDateLocator(tz=tz, minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
    stress.xaxis.set_major_locator(locator)
    lo, hi = ax.get_xlim()
    fmt = "%d %b %Y" if hi - lo > 60 else "%d %b"
    stress.xaxis.set_major_formatter(DateFormatter(fmt, tz=tz))  # type: ignore[no-untyped-call]
    t_ref = datetime.fromtimestamp(lo * DAY, UTC).astimezone(tz).strftime("%Z")
    stress.set_xlabel(f"time in {zone}" + (f" ({t_ref})" if t_ref and t_ref != zone else ""))
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
