"""The replay report: one self-contained HTML page about a replay, like a backtest report.

``stressbot report FILE... --out DIR`` runs the rules over the history files on the engine
live and replay use (:meth:`Engine.from_config`, in memory: no store needed) and writes
``DIR/index.html`` with, embedded as ``data:`` URIs (and also written beside it as PNGs):

- the timeline (:mod:`bot.runtime.report_chart`): the watched assets' price paths
  normalised, VIX, yields in bp, the stress score beneath them, every alert marked;
- the session dollar chart over the last days of the files (:mod:`bot.telegram.session_chart`);
- per-rule counts, and a table of every alert with its numbers (time in UTC and in the
  display zone, rule, severity, kind, summary, values).

No script or stylesheet is loaded from anywhere: the page opens offline. Each ``<img>`` records
its decoded width in ``data-loaded`` when it loads (an inline ``onload``), which the headless
Chromium test reads from the dumped DOM.

The score comes from the stress gauge (:class:`bot.engine.stress.StressSampler`, read every
`every` seconds of event time on the same engine the alerts come from, as
``bot.runtime.stress_history`` does); where it is not known (too few components) the panel
says so instead of drawing anything.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.core.errors import StressbotError
from bot.core.models import Alert, AlertKind, Kind
from bot.engine.derived import SPREAD_INPUTS, USDX_LEGS, rebuild_spread, rebuild_usdx
from bot.engine.rulefile import RuleSet
from bot.engine.series import Series
from bot.engine.sessions import sessions_from_config
from bot.runtime.config import Config
from bot.runtime.report_chart import PRICES, RATES, VOLATILITY, png, timeline_figure
from bot.runtime.stress_history import run_gauge
from bot.telegram.session_chart import (
    DEFAULT_DAYS,
    DOLLAR_SYMBOLS,
    RATE_SYMBOL,
    draw_sessions,
    summary_line,
)
from connectors.history.file import Rejects, read_history

Points = list[tuple[float, float]]
WATCHED = (*PRICES, *VOLATILITY, *RATES)
SCORE_GAP = "stress score: not known anywhere in these files (too few of its components)"


@dataclass
class ReportData:
    files: list[Path]
    paths: dict[str, Points]  # watched symbol -> every point in the files (USDX derived)
    alerts: list[Alert]
    score: Points | None  # (ts, score 0-100) every `every` seconds; None: never known
    ticks: int = 0
    rejects: Rejects = field(default_factory=Rejects)
    notes: list[str] = field(default_factory=list)

    @property
    def span(self) -> tuple[float, float]:
        ts = [t for p in self.paths.values() for t in (p[0][0], p[-1][0]) if p]
        return (min(ts), max(ts)) if ts else (0.0, 0.0)


def usdx_path(raw: dict[str, Points]) -> Points:
    """USDX at every time one of its legs was observed, by the engine's own formula and leg
    rules (:func:`bot.engine.derived.rebuild_usdx`)."""
    if not any(leg in raw for leg in USDX_LEGS):
        return []
    series = {leg: Series(leg, Kind.PRICE) for leg in USDX_LEGS}
    for leg, s in series.items():
        for t, v in raw.get(leg, ()):
            s.add(t, v)
    series["USDX"] = out = Series("USDX", Kind.PRICE)
    firsts = [s.ts[0] for s in series.values() if s.ts]
    rebuild_usdx(series, min(firsts))
    # from the time every leg in the files has a value: an index over fewer legs (weights
    # renormalised) is another level, and a path normalised from it would jump
    full = max(firsts)
    return [(t, v) for t, v in zip(out.ts, out.values, strict=True) if t >= full]


def spread_path(raw: dict[str, Points]) -> Points:
    """SOFR-IORB in bp, one point per SOFR fixing (:func:`bot.engine.derived.rebuild_spread`)."""
    if not all(raw.get(s) for s in SPREAD_INPUTS):
        return []
    series = {s: Series(s, Kind.RATE) for s in SPREAD_INPUTS}
    for sym, s in series.items():
        for t, v in raw[sym]:
            s.add(t, v)
    series["SOFR-IORB"] = out = Series("SOFR-IORB", Kind.SPREAD_BP)
    rebuild_spread(series, min(s.ts[0] for s in series.values() if s.ts))
    return list(zip(out.ts, out.values, strict=True))


def _derive(raw: dict[str, Points]) -> None:
    """Add the derived series the files do not hold (USDX, SOFR-IORB)."""
    if not raw.get("USDX"):
        raw["USDX"] = usdx_path(raw)
    if not raw.get("SOFR-IORB"):
        raw["SOFR-IORB"] = spread_path(raw)


def read_paths(files: Sequence[Path]) -> tuple[dict[str, Points], int, Rejects]:
    """Every point of every symbol in the files (merged by time), USDX added."""
    _check(files)
    rejects = Rejects()
    raw: dict[str, Points] = defaultdict(list)
    n = 0
    for _, _, ts, sym, v in read_history(list(files), rejects):
        raw[sym].append((ts, v))
        n += 1
    _derive(raw)
    return dict(raw), n, rejects


def _check(files: Sequence[Path]) -> None:
    if not files:
        raise StressbotError("no history file given")
    for f in files:
        if not Path(f).is_file():
            raise StressbotError(f"{f}: no such history file")


def collect(
    files: Sequence[Path], rules: RuleSet, config: Config, every: float = 3600.0
) -> ReportData:
    """Run the rules over the files in memory; the paths, the alerts and the score."""
    _check(files)
    rejects = Rejects()
    raw: dict[str, Points] = defaultdict(list)
    engine, run = run_gauge(
        files, rules, config, every, rejects=rejects, seen=lambda t, s, v: raw[s].append((t, v))
    )
    n = sum(len(p) for p in raw.values())
    alerts = run.alerts
    # an unknown score (too few components) is a hole in the line, not a value
    score: Points | None = [(r.ts, math.nan if r.score is None else r.score) for r in run.points]
    notes = []
    if not score or all(math.isnan(v) for _, v in score):
        score = None
        notes.append(SCORE_GAP)
    _derive(raw)
    if engine.stats.usdx_partial:
        notes.append(
            f"the engine computed USDX without every FX leg at {engine.stats.usdx_partial} "
            "points (weights renormalised)"
        )
    paths = {s: raw[s] for s in WATCHED if raw.get(s)}
    if "USDX" in paths:  # one dollar line: the engine's index, DXY only without it
        paths.pop("DXY", None)
    return ReportData(list(files), paths, alerts, score, n, rejects, notes)


# ---- the page ------------------------------------------------------------------------------

e = html.escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1440px}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em}
.meta{color:#555} img{max-width:100%;height:auto;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin-top:.4em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.critical td.sev{color:#C0392B;font-weight:bold} tr.warning td.sev{color:#E67E22}
tr.info td.sev{color:#2E86C1} tr.resolved td{color:#777}
td.when{white-space:nowrap} td.values{white-space:nowrap;font-size:.85em}
.gap{background:#F5EEF8;border:1px solid #7D3C98;padding:6px 10px;display:inline-block}
"""


def _when(ts: float, zone: str) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.strftime("%Y-%m-%d %H:%M UTC")
    if zone != "UTC":
        text += " · " + dt.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    return text


def _img(data: bytes, alt: str, name: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<img id="{e(name)}" src="{uri}" alt="{e(alt)}" '
        "onload=\"this.setAttribute('data-loaded', this.naturalWidth)\">"
    )


def _value(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.4g}"


def rule_counts(alerts: Sequence[Alert]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for a in alerts:
        out[a.rule][a.kind.value] += 1
    return dict(sorted(out.items()))


def render_html(
    data: ReportData, charts: dict[str, tuple[bytes, str]], zone: str, extra: str = ""
) -> str:
    """The page: `charts` is name -> (PNG, caption)."""
    lo, hi = data.span
    files = ", ".join(f.name for f in data.files)
    firing = [a for a in data.alerts if a.kind is not AlertKind.RESOLVED]
    kinds = [k.value for k in AlertKind]
    counts = rule_counts(data.alerts)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>stressbot replay report: {e(files)}</title><style>{CSS}</style></head><body>",
        f"<h1>Replay report: {e(files)}</h1>",
        f'<p class="meta">{e(_when(lo, zone))} to {e(_when(hi, zone))} · '
        f"{data.ticks:,} ticks read, {data.rejects.total:,} rejected · "
        f"{len(firing)} alerts ({len(data.alerts) - len(firing)} resolutions)</p>",
    ]
    out += [f'<p class="gap">{e(n)}</p>' for n in data.notes if n == SCORE_GAP]
    out.append("<h2>Alerts per rule</h2>")
    out.append('<table id="counts"><tr><th>rule</th>' + "".join(f"<th>{k}</th>" for k in kinds))
    out.append("<th>total</th></tr>")
    for rule, c in counts.items():
        cells = "".join(f'<td class="num">{c.get(k, 0)}</td>' for k in kinds)
        out.append(f'<tr><td>{e(rule)}</td>{cells}<td class="num">{sum(c.values())}</td></tr>')
    if not counts:
        out.append(f'<tr><td colspan="{len(kinds) + 2}">no alerts</td></tr>')
    out.append("</table>")
    for name, (data_png, caption) in charts.items():
        out.append(f"<h2>{e(caption)}</h2>")
        out.append(_img(data_png, caption, name))
    out.append(extra)
    out.append("<h2>Alerts</h2>")
    out.append(
        '<table id="alerts"><tr><th>#</th><th>time</th><th>rule</th><th>severity</th>'
        "<th>kind</th><th>summary</th><th>values</th></tr>"
    )
    for n, a in enumerate(data.alerts, 1):
        values = "<br>".join(f"{e(k)} = {e(_value(v))}" for k, v in a.values.items())
        cls = "resolved" if a.kind is AlertKind.RESOLVED else e(a.severity)
        out.append(
            f'<tr class="alert {cls}"><td class="num">{n}</td>'
            f'<td class="when">{e(_when(a.ts, zone)).replace(" · ", "<br>")}</td>'
            f'<td>{e(a.rule)}</td><td class="sev">{e(a.severity)}</td><td>{e(a.kind.value)}</td>'
            f'<td>{e(a.summary)}</td><td class="values">{values}</td></tr>'
        )
    out.append("</table>")
    notes = [n for n in data.notes if n != SCORE_GAP]
    if notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    out.append(
        f'<p class="meta">Times in UTC and {e(zone)}. Made by stressbot report; the numbers '
        "are the engine's, on event time, as a live run fed the same ticks would give.</p>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    files: Sequence[Path],
    out_dir: Path,
    rules: RuleSet,
    config: Config,
    *,
    zone: str | None = None,
    every: float = 3600.0,
    session_days: float = DEFAULT_DAYS,
) -> tuple[Path, ReportData]:
    """Build the report into `out_dir` (index.html, timeline.png, sessions.png)."""
    zone = zone or config.display.timezone
    data = collect(files, rules, config, every)
    if not data.paths:
        raise StressbotError("the files hold none of the watched symbols: nothing to report")
    gap = SCORE_GAP if data.score is None else ""
    timeline = png(timeline_figure(data.paths, data.alerts, data.score, zone, score_gap=gap))
    charts = {
        "timeline": (
            timeline,
            "Price paths (normalised), VIX, yields (bp) and the stress score; alerts numbered "
            "as in the table",
        )
    }
    extra = ""
    _lo, hi = data.span
    for sym in DOLLAR_SYMBOLS:
        pts = data.paths.get(sym, [])
        if len(pts) >= 2:
            sess, paths = draw_sessions(
                sym,
                pts,
                sessions_from_config(config.sessions),
                now=hi,
                days=session_days,
                zone=zone,
                rates={RATE_SYMBOL: data.paths.get(RATE_SYMBOL, [])},
            )
            charts["sessions"] = (
                sess,
                f"The dollar by session over the last {session_days:g} days of the files",
            )
            extra = f'<p class="meta">{e(sym)} by session: {e(summary_line(paths))}</p>'
            break
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (image, _) in charts.items():
        (out_dir / f"{name}.png").write_bytes(image)
    page = out_dir / "index.html"
    page.write_text(render_html(data, charts, zone, extra), encoding="utf-8")
    return page, data
