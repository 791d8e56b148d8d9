"""The session dollar chart: per-session cumulative returns, on alerts, /sessions and the CLI."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.models import Alert, Kind
from bot.engine.config import default_sessions
from bot.engine.series import Series
from bot.engine.session_paths import session_paths, windows_begun
from bot.engine.sessions import Session, SessionReturns, session_moves, sessions_from_config
from bot.notify.chart import session_figure
from bot.store.redis_store import Checkpoint, Store
from bot.telegram.session_chart import alert_days, alert_renderer, draw_sessions, lines_of
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import telegram_fixture
from tests.test_telegram_commands import _ask, running_bot

HOUR, DAY = 3600.0, 86400.0
SESSIONS = sessions_from_config(default_sessions())
T0 = datetime(2020, 3, 2, tzinfo=UTC).timestamp()

tg = telegram_fixture()


def walk(steps: list[float], start: float = T0, every: float = HOUR) -> list[tuple[float, float]]:
    v, out = 100.0, []
    for i, s in enumerate(steps):
        v *= 1 + s / 100
        out.append((start + i * every, v))
    return out


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-0.5, 0.5), min_size=30, max_size=400),
    every=st.sampled_from([900.0, HOUR, 3 * HOUR]),
    at=st.floats(0.1, 1.0),
    days=st.integers(1, 12),
)
def test_the_last_point_of_each_path_is_the_engines_session_sum(
    steps: list[float], every: float, at: float, days: int
) -> None:
    pts = walk(steps, every=every)
    now = T0 + at * len(steps) * every
    s = Series("USDX", Kind.PRICE)
    for t, v in pts:
        s.add(t, v)
    engine = SessionReturns(SESSIONS)
    paths = session_paths(pts, SESSIONS, now, days)
    for name, path in paths.items():
        want = engine.sum(s, name, now, days * DAY)
        if want is None:
            assert path.total is None
        else:
            assert path.total is not None and math.isclose(path.total, want, abs_tol=1e-9)
        # cumulative: one point per session with a known return, at its end (or now)
        assert path.known == len(path.points) <= path.sessions
        assert all(t <= now for t, _ in path.points)


def test_sessions_follow_local_time_and_dst() -> None:
    london = Session("europe", ZoneInfo("Europe/London"), time(8), time(13))
    winter = datetime(2020, 1, 20, 20, tzinfo=UTC).timestamp()
    summer = datetime(2020, 7, 20, 20, tzinfo=UTC).timestamp()
    (w,) = windows_begun(london, winter, DAY)
    (s,) = windows_begun(london, summer, DAY)
    assert datetime.fromtimestamp(w[1], UTC).hour == 13  # GMT
    assert datetime.fromtimestamp(s[1], UTC).hour == 12  # BST
    pts = walk([0.1] * 24 * 3, start=summer - 2 * DAY)
    path = session_paths(pts, {"europe": london}, summer, 1)["europe"]
    assert [datetime.fromtimestamp(t, UTC).hour for t, _ in path.points] == [12]


def test_one_line_per_session_from_zero_labelled_with_its_hours() -> None:
    pts = walk([0.05, -0.1, 0.02] * 100)
    now = pts[-1][0]
    paths = session_paths(pts, SESSIONS, now, 10)
    lines = lines_of(paths, SESSIONS, now - 10 * DAY)
    fig = session_figure(lines, "Europe/Zurich", title="USDX by session", now=now)
    labels = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert len(labels) == 3
    assert labels[0].startswith("Asia (09:00-16:00 Asia/Tokyo): ")
    assert labels[1].startswith("Europe (08:00-13:00 Europe/London): ")
    assert labels[2].startswith("New York (08:00-17:00 America/New_York): ")
    for (_, line), p in zip(lines, paths.values(), strict=True):
        assert line[0] == (now - 10 * DAY, 0.0) and line[-1][1] == p.total
    assert "cumulative return (%)" in fig.axes[0].get_ylabel()


def session_alert(pts: list[tuple[float, float]], now: float) -> Alert:
    return Alert(
        id="session_dollar@x",
        ts=now,
        rule="session_dollar",
        pattern="session_dollar",
        severity="info",
        summary="Sell-America pattern over 10 days",
        symbols=["USDX", "US10Y"],
        window=11 * DAY,  # session_ret's 10d looks back a day more (rulelang)
        chart={"USDX": pts, "US10Y": [(now - 11 * DAY, 1.0), (now - DAY, 1.1)]},
    )


def test_a_session_dollar_alert_gets_the_session_chart_and_others_the_alert_chart() -> None:
    pts = walk([0.03, -0.05, 0.01, 0.02] * 70)
    now = pts[-1][0]
    calls: list[str] = []

    def fallback(a: Alert, series: object, zone: str) -> bytes:
        calls.append(a.rule)
        return b"fallback"

    render = alert_renderer(default_sessions(), fallback)
    a = session_alert(pts, now)
    assert alert_days(a) == 10.0
    png = render(a, a.chart, "Europe/Zurich")
    assert png.startswith(b"\x89PNG") and calls == []
    other = Alert("x", now, "btc_crash", "crypto_crash", "critical", "BTC down", chart=a.chart)
    assert render(other, a.chart, "UTC") == b"fallback" and calls == ["btc_crash"]
    # the chart's totals are the engine's session values over the rule's 10 days
    _, paths = draw_sessions("USDX", pts, SESSIONS, now=now, days=10, zone="UTC")
    want = session_moves(pts, SESSIONS, now, 10)
    assert {n: p.total for n, p in paths.items()} == want


async def seed_dollar(store: Store, days: int = 14) -> tuple[float, list[tuple[float, float]]]:
    start = datetime.combine(date(2020, 3, 2), time(), UTC).timestamp()
    pts = walk([0.04, -0.06, 0.02] * (8 * days), start=start)
    now = pts[-1][0]
    await store.commit(Checkpoint("p", "f", now, b"{}"), latest={"USDX": pts[-1]})
    await store.add_series({"USDX": pts}, keep_after=0)
    return now, pts


async def test_sessions_command_replies_with_the_chart_and_the_totals(
    store: Store, tg: FakeTelegram
) -> None:
    now, pts = await seed_dollar(store)
    want = session_moves(pts, SESSIONS, now, 5)
    async with running_bot(store, tg):
        r = await _ask(tg, "/sessions 5")
        bad = await _ask(tg, "/sessions lots")
        far = await _ask(tg, "/sessions 90")
    assert r.method == "sendPhoto" and (r.photo or b"").startswith(b"\x89PNG")
    assert "USDX by session, 5 days" in r.visible
    for name, shown in (("asia", "Asia"), ("europe", "Europe"), ("us", "New York")):
        assert f"{shown} {want[name]:+.2f}%" in r.visible
    assert "Usage: /sessions [DAYS]" in bad.visible
    assert "DAYS must be from 1 to 30" in far.visible


async def test_sessions_command_without_dollar_data_says_so(store: Store, tg: FakeTelegram) -> None:
    async with running_bot(store, tg):
        r = await _ask(tg, "/sessions")
    assert "No dollar index data yet" in r.visible
