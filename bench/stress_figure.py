"""The stress score's history on the real files, for docs/stress.md.

    PYTHONPATH=. python3 bench/stress_figure.py [--shared ../shared] [--out docs]

Replays dev-2000-2018-daily.csv.gz and dev-2019-2021.csv.gz (each on its own: they are not
the same instruments), reads the gauge every 6 hours of event time (`stress_series`), and
writes docs/stress-history.png (the score over 2000-2021, episodes of the library marked),
docs/stress-2020.png (episode-312.csv and episode-519.csv with each component's
contribution) and prints the distribution tables the doc quotes. A derived figure of our own
score: no data of the files is copied into it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bot.core.models import iso_utc
from bot.engine.episodes import load_library, shipped_library_dir
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.engine.stress import COMPONENT_NAMES, StressReading
from bot.runtime.config import Config
from bot.runtime.stress_history import stress_series

EPISODE_MONTHS = ("2019-09", "2020-02", "2020-03", "2020-04", "2021-05")


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _pct(v: list[float], q: float) -> float:
    return v[min(int(len(v) * q), len(v) - 1)]


def distribution(points: list[StressReading], title: str) -> str:
    v = sorted(p.score for p in points if p.score is not None)
    n = len(v)
    above = {t: 100 * sum(x > t for x in v) / n for t in (30, 50, 80)}
    return (
        f"| {title} | {n} | {_pct(v, 0.5):.1f} | {_pct(v, 0.9):.1f} | {_pct(v, 0.99):.1f} | "
        f"{v[-1]:.1f} | {above[30]:.1f}% | {above[50]:.2f}% | {above[80]:.2f}% |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    hist = args.shared / "data" / "history"
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    every = 6 * 3600.0
    old = stress_series([hist / "dev-2000-2018-daily.csv.gz"], rules, config, every).points
    new = stress_series([hist / "dev-2019-2021.csv.gz"], rules, config, every).points
    library = load_library(shipped_library_dir())

    fig, ax = plt.subplots(2, 1, figsize=(13, 7), constrained_layout=True)
    for a, pts, name in (
        (ax[0], old, "dev-2000-2018-daily.csv.gz (daily closes)"),
        (ax[1], new, "dev-2019-2021.csv.gz (hourly and daily)"),
    ):
        xs = [_dt(p.ts) for p in pts if p.score is not None]
        ys = [p.score for p in pts if p.score is not None]
        a.fill_between(xs, ys, step="post", color="#c0392b", alpha=0.35, linewidth=0)
        a.plot(xs, ys, drawstyle="steps-post", color="#c0392b", linewidth=0.5)
        a.set_ylim(0, 100)
        a.set_ylabel("stress score (0-100)")
        a.set_title(f"Stress score every 6 h (UTC), {name}", loc="left", fontsize=10)
        a.axhline(80, color="grey", linewidth=0.6, linestyle="--")
        lo, hi = xs[0], xs[-1]
        for ep in library:
            if ep.at and lo <= _dt(datetime.fromisoformat(ep.at).timestamp()) <= hi:
                t = _dt(datetime.fromisoformat(ep.at).timestamp())
                a.annotate(ep.id, (t, 100), xytext=(0, -10), textcoords="offset points",
                           fontsize=7, ha="center", rotation=90, va="top")  # fmt: skip
    fig.savefig(args.out / "stress-history.png", dpi=110)

    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for a, fname in zip(ax, ("episode-312.csv", "episode-519.csv"), strict=True):
        pts = stress_series([hist / fname], rules, config, 3600.0).points
        pts = [p for p in pts if p.score is not None]
        xs = [_dt(p.ts) for p in pts]
        stack = [[p.component(n).contribution for p in pts] for n in COMPONENT_NAMES]
        a.stackplot(xs, stack, labels=COMPONENT_NAMES, step="post",
                    colors=[colours(i) for i in range(len(COMPONENT_NAMES))])  # fmt: skip
        a.set_ylim(0, 100)
        a.set_title(f"{fname}: score (hourly, UTC) split into components", loc="left", fontsize=10)
        a.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax[0].set_ylabel("points of the score")
    ax[1].legend(loc="upper right", fontsize=7)
    fig.savefig(args.out / "stress-episodes.png", dpi=110)

    ordinary = [p for p in new if not iso_utc(p.ts).startswith(EPISODE_MONTHS)]
    print("| readings | n | median | p90 | p99 | max | > 30 | > 50 | > 80 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(distribution(ordinary, "2019-2021, ordinary months"))
    print(distribution(new, "2019-2021, all"))
    print(distribution(old, "2000-2018 (daily), all"))
    for yr in range(2000, 2022):
        pts = [p for p in old + new if iso_utc(p.ts).startswith(str(yr)) and p.score is not None]
        if pts:
            top = max(pts, key=lambda p: p.score or 0.0)
            print(f"{yr}: max {top.score:.0f} at {iso_utc(top.ts)[:10]}")


if __name__ == "__main__":
    main()
