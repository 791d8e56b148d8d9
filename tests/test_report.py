"""`stressbot report`: one self-contained HTML page with the charts, the alerts and the counts.

The page is checked twice: parsed here (the embedded images are PNGs, a table row per alert,
nothing loaded from the network), and rendered by headless Chromium (Debian's `chromium`),
whose dumped DOM must show every image decoded (`data-loaded`, set by the image's own onload)
and the alert table's rows. Without Chromium that test skips and says why.
"""

from __future__ import annotations

import base64
import html
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.core.models import AlertKind
from bot.engine.rulefile import load_rules
from bot.engine.session_paths import session_paths
from bot.engine.sessions import sessions_from_config
from bot.runtime.config import Config
from bot.runtime.report import read_paths, write_report
from bot.runtime.report_chart import timeline_figure
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent
HOUR, DAY = 3600.0, 86400.0
T0 = datetime(2020, 3, 2, tzinfo=UTC).timestamp()
RULE = """
[[rule]]
id = "btc_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "1h") < -5'
for = "0s"
cooldown = "6h"
summary = "BTC {r:+.1f}% in 1h"

[rule.values]
r = 'ret("BTC/USD", "1h")'
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history(path: Path, days: int = 6) -> Path:
    """Hourly BTC with two 8% drops, hourly FX legs (for USDX), daily SPX and US10Y."""
    rows = ["ts,symbol,value"]
    btc = 9000.0
    for h in range(days * 24):
        t = T0 + h * HOUR
        btc *= 0.92 if h in (50, 100) else 1.001
        rows.append(f"{iso(t)},BTC/USD,{btc:.2f}")
        wiggle = 1 + 0.001 * ((h * 7) % 5 - 2)
        for sym, v in (("EUR/USD", 1.10), ("USD/JPY", 108.0), ("GBP/USD", 1.28)):
            rows.append(f"{iso(t)},{sym},{v * wiggle:.5f}")
        for sym, v in (("USD/CAD", 1.33), ("USD/CHF", 0.96), ("USD/SEK", 9.6)):
            rows.append(f"{iso(t)},{sym},{v / wiggle:.5f}")
        if h % 24 == 21:
            rows.append(f"{iso(t)},SPX,{3000 - h:.2f}")
            rows.append(f"{iso(t)},US10Y,{1.2 - h / 2000:.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


class Page(HTMLParser):
    """The images and the rows of each table of a page, and every URL it would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.rows: dict[str, int] = {}
        self.fetches: list[str] = []
        self._table = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self._table = a.get("id", "")
        if tag == "tr" and "alert" in a.get("class", "").split():
            self.rows[self._table] = self.rows.get(self._table, 0) + 1
        for k in ("src", "href"):
            if k in a and not a[k].startswith("data:"):
                self.fetches.append(a[k])


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "btc.toml").write_text(RULE)
    return d


def test_the_page_embeds_its_charts_and_lists_every_alert(tmp_path: Path) -> None:
    csv = history(tmp_path / "h.csv")
    config = Config()
    rules = load_rules(rules_dir(tmp_path), config.sessions)
    page, data = write_report([csv], tmp_path / "out", rules, config, zone="Europe/Zurich")
    firing = [a for a in data.alerts if a.kind is AlertKind.FIRING]
    assert [a.rule for a in firing] == ["btc_drop", "btc_drop"]
    text = page.read_text()
    p = parse(text)
    assert p.fetches == [] and "<script src" not in text and "<link" not in text
    assert {i["id"] for i in p.imgs} == {"timeline", "sessions"}
    for img in p.imgs:
        raw = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert raw.startswith(b"\x89PNG")
        assert (tmp_path / "out" / f"{img['id']}.png").read_bytes() == raw
    assert p.rows["alerts"] == len(data.alerts)
    for a in data.alerts:
        assert html.escape(a.summary) in text
    # per-rule counts: firing and resolved of btc_drop
    counts = re.search(r"<td>btc_drop</td>(.*?)</tr>", text)
    assert counts is not None
    cells = re.findall(r'<td class="num">(\d+)</td>', counts.group(1))
    assert int(cells[0]) == 2 and int(cells[-1]) == len(data.alerts)
    assert {"BTC/USD", "SPX", "US10Y", "USDX"} <= data.paths.keys()
    # every alert's time in the table says its zone (the page header alone always did)
    when = re.findall(r'<td class="when">(.*?)</td>', text)
    assert len(when) == len(data.alerts)
    for a, cell in zip(data.alerts, when, strict=True):
        assert datetime.fromtimestamp(a.ts, UTC).strftime("%Y-%m-%d %H:%M UTC") in cell


def test_usdx_is_drawn_from_the_engines_formula_and_only_with_every_leg(tmp_path: Path) -> None:
    csv = history(tmp_path / "h.csv", days=2)
    paths, n, rejects = read_paths([csv])
    assert rejects.total == 0 and n > 0
    usdx = paths["USDX"]
    assert usdx[0][0] == T0 and len(usdx) == 48
    assert 80 < usdx[0][1] < 120


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def test_the_score_panel_draws_the_score_or_says_why_not() -> None:
    paths = {"BTC/USD": [(T0, 1.0), (T0 + HOUR, 2.0)]}
    score = [(T0, 10.0), (T0 + HOUR, math.nan), (T0 + 2 * HOUR, 85.0)]
    fig = timeline_figure(paths, [], score, "UTC")
    stress = fig.axes[3]
    assert next(ln.get_label() for ln in stress.get_lines()) == "stress score"
    gap = timeline_figure(paths, [], None, "UTC", score_gap="not known here")
    assert [t.get_text() for t in gap.axes[3].texts] == ["not known here"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`stressbot ARGS` in this process (its entry point, as the console script runs it)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return Run(rc, out, err)


def test_report_and_sessions_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = history(tmp_path / "h.csv")
    rdir = rules_dir(tmp_path)
    r = run_cli(capsys, "report", str(csv), "--out", str(tmp_path / "rep"), "--rules", str(rdir))
    assert r.returncode == 0, r.stderr
    assert "report written to" in r.stdout and "btc_drop" in r.stdout
    assert (tmp_path / "rep" / "index.html").is_file()
    out = tmp_path / "s.png"
    r = run_cli(capsys, "sessions", str(csv), "--days", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    paths, _, _ = read_paths([csv])
    usdx = paths["USDX"]
    want = session_paths(usdx, sessions_from_config(Config().sessions), usdx[-1][0], 3)
    for name, shown in (("asia", "Asia"), ("europe", "Europe"), ("us", "New York")):
        total = want[name].total
        assert total is not None and f"{shown} {total:+.2f}%" in r.stdout
    bad = run_cli(capsys, "report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "nope.csv: no such history file" in bad.stderr
    assert "Traceback" not in bad.stderr
    zone = run_cli(capsys, "sessions", str(csv), "--out", str(out), "--zone", "Mars/Olympus")
    assert zone.returncode == 2 and "not an IANA time zone" in zone.stderr


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "headless Chromium is not installed (Debian: apt-get install -y chromium; "
        "scripts/test installs it when apt is available)"
    )


def headless(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_the_312_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    csv = shared_path("data", "history", "episode-312.csv")
    config = Config()
    rules = load_rules(ROOT / "rules", config.sessions)
    page, data = write_report([csv], tmp_path / "r312", rules, config, zone="Europe/Zurich")
    first = min(a.ts for a in data.alerts if a.rule == "liquidity_crisis")
    assert data.score is not None  # the gauge beneath the prices, up to the first crisis alert
    assert max(v for t, v in data.score if t <= first and not math.isnan(v)) > 80
    url = page.resolve().as_uri()
    dom = headless(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = parse(dom.stdout.decode())
    # every image decoded by the browser: its onload wrote its natural width
    assert {i["id"]: int(i.get("data-loaded", "0")) for i in p.imgs} == {
        "timeline": 1400,
        "sessions": 800,
    }
    assert p.rows["alerts"] == len(data.alerts) >= 4
