"""Alert charts a trader reads on a phone: what the figure says, read from the figure itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bot.core.models import CHART_SPAN, Alert
from bot.notify.chart import (
    ChartError,
    chart_figure,
    clip,
    is_sparse,
    render_chart,
    when_text,
)

HOUR, DAY = 3600.0, 86400.0
# Thu 12 Mar 2020 17:00 UTC (18:00 CET in Zurich)
T = datetime(2020, 3, 12, 17, tzinfo=UTC).timestamp()


def alert(series: dict[str, list[tuple[float, float]]], **kw: object) -> Alert:
    base: dict[str, object] = {
        "id": "liquidity_crisis@x",
        "ts": T,
        "rule": "liquidity_crisis",
        "pattern": "liquidity_crisis",
        "severity": "critical",
        "summary": "Dash for cash: BTC -30.0%, S&P 500 -7.8%, US 10y +8 bp",
        "symbols": list(series),
        "window": 5 * DAY,
        "chart": series,
    }
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def hourly(start: float, n: int, v0: float, step: float) -> list[tuple[float, float]]:
    return [(start + i * HOUR, v0 + i * step) for i in range(n)]


def daily(closes: list[float], last: float) -> list[tuple[float, float]]:
    """Closes one a day, the last at `last`."""
    n = len(closes)
    return [(last - (n - 1 - i) * DAY, v) for i, v in enumerate(closes)]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.texts]


def legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for lg in fig.legends for t in lg.get_texts()]


def named(ax: Axes) -> set[str]:
    """The symbols of the labelled lines of a panel."""
    return {str(ln.get_label()).split()[0] for ln in ax.get_lines() if ln.get_label()[0] != "_"}


def series_312() -> dict[str, list[tuple[float, float]]]:
    return {
        "BTC/USD": hourly(T - 4 * DAY, 4 * 24 + 1, 8000.0, -25.0),
        # the S&P 500's last close before the trigger is the previous evening's
        "SPX": daily([3000.0, 2950.0, 2900.0, 2746.0, 2882.0, 2741.0], T - 20 * HOUR),
        "US10Y": daily([1.0, 0.9, 0.74, 0.54, 0.76, 0.82], T - 20 * HOUR),
    }


def test_the_title_is_the_summary_and_the_date_with_year_and_zone() -> None:
    a = alert(series_312())
    fig = chart_figure(a, a.chart, "Europe/Zurich")
    title, sub = texts(fig)[:2]
    assert title.replace("\n", " ") == a.summary
    assert sub.startswith("Thu 12 Mar 2020 18:00 CET (Europe/Zurich)")
    assert "CRITICAL" in sub and "liquidity_crisis" in sub
    assert when_text(T, "UTC") == "Thu 12 Mar 2020 17:00 UTC"


def test_prices_share_one_percent_axis_and_yields_get_a_bp_panel() -> None:
    a = alert(series_312())
    fig = chart_figure(a, a.chart, "Europe/Zurich")
    main, panel = fig.axes
    assert "(%)" in main.get_ylabel() and "(bp)" in panel.get_ylabel()
    assert named(main) == {"BTC/USD", "SPX"} and named(panel) == {"US10Y"}
    # normalised: every price line starts at 0 %
    for ln in main.get_lines():
        if ln.get_label().startswith(("BTC", "SPX")):
            assert ln.get_ydata()[0] == pytest.approx(0.0)  # type: ignore[index]
    assert "Europe/Zurich" in panel.get_xlabel() and "CET" in panel.get_xlabel()


def test_the_trigger_is_marked_with_the_values_there() -> None:
    a = alert(series_312())
    fig = chart_figure(a, a.chart, "Europe/Zurich")
    labels = legend_labels(fig)
    btc = next(x for x in labels if x.startswith("BTC/USD"))
    # 8000 -> 8000 - 96*25 = 5600 over the window: -30.00 %, level 5,600
    assert "-30.00%" in btc and "5,600" in btc
    y10 = next(x for x in labels if x.startswith("US10Y"))
    assert "-18 bp" in y10 and "0.82%" in y10  # 1.00% -> 0.82%
    x_trigger = T / DAY
    for ax in fig.axes:  # a dashed trigger line on both panels
        assert any(
            ln.get_linestyle() == "--" and list(ln.get_xdata()) == [x_trigger] * 2  # type: ignore[arg-type]
            for ln in ax.get_lines()
        )


def test_daily_series_are_steps_with_dots_held_to_the_trigger() -> None:
    a = alert(series_312())
    fig = chart_figure(a, a.chart, "UTC")
    spx = next(ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("SPX"))
    btc = next(ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("BTC"))
    assert spx.get_drawstyle() == "steps-post" and spx.get_marker() == "o"
    assert btc.get_drawstyle() == "default"
    assert "daily, last 11 Mar" in spx.get_label()
    # the held part: dotted, from the last close to the trigger, at the last close's level
    held = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"]
    assert any(list(ln.get_xdata())[-1] == pytest.approx(T / DAY) for ln in held)  # type: ignore[arg-type]
    assert is_sparse([p[0] for p in a.chart["SPX"]])
    assert not is_sparse([p[0] for p in a.chart["BTC/USD"]])


def test_a_long_lookback_is_clipped_to_the_display_span() -> None:
    year = hourly(T - 370 * DAY, 370 * 24 + 1, 100.0, 0.001)
    a = alert({"BTC/USD": year}, window=376 * DAY)
    fig = chart_figure(a, a.chart, "UTC")
    lo, _hi = fig.axes[0].get_xlim()
    assert lo == pytest.approx((T - CHART_SPAN) / DAY)
    assert "since 02 Mar" in fig.axes[0].get_ylabel()
    c = clip(year, T - CHART_SPAN)
    assert c[0][0] == T - CHART_SPAN and c[0][1] == pytest.approx(dict(year)[T - CHART_SPAN])


def test_no_drawable_data_is_a_chart_error_and_a_png_otherwise() -> None:
    with pytest.raises(ChartError):
        render_chart(alert({"BTC/USD": [(T, 1.0)]}), {"BTC/USD": [(T, 1.0)]})
    a = alert(series_312())
    assert render_chart(a, a.chart, "America/New_York").startswith(b"\x89PNG")


def test_a_probe_alert_without_summary_is_titled_by_its_symbols() -> None:
    a = alert(series_312(), rule="chart", summary="")
    fig = chart_figure(a, a.chart, "UTC")
    assert texts(fig)[0] == "BTC/USD, SPX, US10Y"
    assert "liquidity" not in texts(fig)[1]
