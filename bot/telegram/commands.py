"""What each Telegram command answers (:class:`Commands`), independent of python-telegram-bot.

Arguments arrive as split words; replies are Telegram HTML built from escaped values, so
hostile arguments come back verbatim, and a user's argument is repeated cut to
:data:`SHOWN_ARG` characters, so no reply grows with what was typed. The PTB glue is
:mod:`bot.telegram.command_bot`.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol

from bot.core.durations import format_duration, parse_duration
from bot.core.errors import DurationError, StressbotError
from bot.core.models import SYMBOLS, Alert, AlertKind, Kind
from bot.engine.config import SessionConfig
from bot.engine.episodes import format_like, stress_line
from bot.notify.chart import ChartRenderer, render_chart
from bot.notify.config import NotifySettings
from bot.notify.format import (
    fmt_number,
    trim,
)
from bot.notify.heartbeat import is_heartbeat
from bot.notify.ledger import ALL, Ledger
from bot.notify.service import accepts
from bot.notify.silences import Matcher, Silence, SilenceError, silencing
from bot.store.connection import is_outage, outage_reason
from bot.telegram.session_chart import (
    DEFAULT_DAYS,
    DOLLAR_SYMBOLS,
    RATE_SYMBOL,
    draw_sessions,
    summary_line,
)

if TYPE_CHECKING:
    from bot.store.redis_store import Store

log = logging.getLogger(__name__)


class CommandBotSettings(NotifySettings, Protocol):
    """What the command bot reads of the whole configuration (the root `Config` provides it)."""

    @property
    def sessions(self) -> Mapping[str, SessionConfig]: ...


e = html.escape
_NUMBER = re.compile(r"[0-9]{1,6}")
#: Longest piece of a user's argument repeated in a reply.
SHOWN_ARG = 64


def shown(arg: str) -> str:
    """An argument as a reply repeats it: cut (with an ellipsis) so no reply grows with it."""
    return trim(arg, SHOWN_ARG)


MIN_MUTE = 60.0
MAX_MUTE = 30 * 86400.0
MAX_HISTORY = 50
MAX_CHART_WINDOW = 7 * 86400.0
MAX_SESSION_DAYS = 30.0

HELP = """<b>stressbot</b>: market-stress alerts
/status: prices, 1h and 24h moves, dollar by session, feeds, what is firing
/rules: every rule and its state
/mute RULE|all DURATION: silence alerts, e.g. <code>/mute btc_crash 2h</code>
/unmute [RULE|all]: end a mute (all mutes without an argument)
/silence MATCHER... DURATION [COMMENT]: matchers on rule, pattern, severity with =, !=, =~, !~,
  e.g. <code>/silence pattern=~rates.* severity!=critical 4h FOMC</code>
/silences: the silences in force, with what each held back
/unsilence ID: end a silence
/history [N]: the last N alerts (default 10, at most 50)
/chart [SYMBOLS] [WINDOW]: e.g. <code>/chart BTC/USD,DXY 24h</code>
/sessions [DAYS]: the dollar by session (Asia, Europe, New York), default 10 days
/like: the stress score (0-100), its components, and how much now looks like 312, 519...
/test [info|warning|critical]: send a test alert through every matching destination
/help: this text"""


class CommandError(StressbotError):
    """A command's arguments are invalid; the message is shown to the user (plain text)."""


STORAGE_DOWN = (
    "Storage unavailable: the bot cannot reach its Redis right now, so it cannot answer that. "
    "Alerts are kept and go out once it is back; try again in a minute."
)
_P = ParamSpec("_P")


def needs_store(fn: Callable[_P, Awaitable[Reply]]) -> Callable[_P, Awaitable[Reply]]:
    """A command that reads Redis: while Redis is down it answers :data:`STORAGE_DOWN` (as a
    CommandError, a plain reply) instead of failing. Down is every outage
    :func:`bot.store.connection.is_outage` knows: a lost connection or a timeout, a Cluster
    healing (CLUSTERDOWN, TRYAGAIN), a master refusing writes such as /silence for want of
    replicas (NOREPLICAS); every call tries the store afresh, so the
    commands recover by themselves when it is back (redis-py's pool reconnects on the next
    command)."""

    @functools.wraps(fn)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> Reply:
        try:
            return await fn(*args, **kwargs)
        except Exception as ex:
            if not is_outage(ex):  # a bug: the bot logs it and says "Something went wrong"
                raise
            log.warning("command: storage unavailable (%s)", outage_reason(ex))
            raise CommandError(STORAGE_DOWN) from None

    return run


@dataclass(slots=True)
class Reply:
    html: str
    photo: bytes | None = None


def _now_text(ts: float, zone: str) -> str:
    from bot.notify.format import fmt_times

    u, loc = fmt_times(ts, zone)
    return f"{u} · {loc}" if loc else u


def _move(kind: Kind, old: float | None, new: float) -> str:
    if old is None:
        return "n/a"
    if kind is Kind.PRICE:
        return "n/a" if old == 0 else f"{(new / old - 1) * 100:+.2f}%"
    scale = 100.0 if kind is Kind.RATE else 1.0
    return f"{(new - old) * scale:+.1f}bp"


def _value_at(points: list[tuple[float, float]], t: float) -> float | None:
    best = None
    for ts, v in points:
        if ts <= t:
            best = v
        else:
            break
    return best


def _ago(seconds: float) -> str:
    return format_duration(max(0.0, seconds)) + " ago"


class Commands:
    """What each command answers, given the store. Arguments arrive as split words."""

    def __init__(
        self, config: CommandBotSettings, store: Store, *, renderer: ChartRenderer | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.ledger = Ledger(store)
        self.zone = config.display.timezone
        self.renderer = renderer or render_chart

    async def clock(self) -> float:
        """'Now' for market data: the newest value the engine holds (replays live in the
        past), or the wall clock when there is none."""
        latest = await self.store.latest()
        return max((t for t, _ in latest.values()), default=time.time())

    # ---- /status ---------------------------------------------------------------------------

    @needs_store
    async def status(self) -> Reply:
        now = await self.clock()
        latest = await self.store.latest()
        out = [f"<b>Status</b> · {e(_now_text(now, self.zone))}"]
        if latest:
            rows = []
            for sym in sorted(latest):
                _t, v = latest[sym]
                kind = SYMBOLS.get(sym, Kind.PRICE)
                pts = await self.store.series(sym, now - 86400 - 3600, now)
                m1 = _move(kind, _value_at(pts, now - 3600), v)
                m24 = _move(kind, _value_at(pts, now - 86400), v)
                rows.append(f"{sym:<10} {fmt_number(v):>12} 1h {m1:>9} 24h {m24:>9}")
            out.append("<b>Latest</b>\n<pre>" + e("\n".join(rows)) + "</pre>")
        else:
            out.append("<b>Latest</b>: no prices yet")
        out.append(await self._session_lines(now))
        gauge = (await self.store.engine_status()).get("stress")
        if gauge:  # published by the live engine (bot/engine/episodes.py: stress_report)
            out.append(f"<b>{e(stress_line(gauge))}</b> (/like for the breakdown)")
        feeds = await self.store.feed_statuses()
        if feeds:
            lines = []
            for name, f in sorted(feeds.items()):
                last = f.get("last_tick_ts")
                age = f", last tick {_ago(time.time() - float(last))}" if last else ""
                detail = f" ({f['detail']})" if f.get("detail") else ""
                lines.append(
                    f"• {e(name)}: <b>{e(str(f.get('state', '?')))}</b>{e(age)}{e(detail)}"
                )
            out.append("<b>Feeds</b>\n" + "\n".join(lines))
        else:
            out.append("<b>Feeds</b>: none reported")
        states = await self.store.rule_states()
        firing = [(r, s) for r, s in sorted(states.items()) if s.get("state") == "firing"]
        if firing:
            out.append(
                "<b>Firing</b>\n"
                + "\n".join(
                    f"🔴 {e(r)} ({e(str(s.get('severity', '')))}) since "
                    f"{e(_ts_text(s.get('firing_since')))}"
                    for r, s in firing
                )
            )
        else:
            out.append("<b>Firing</b>: nothing")
        silences = await self.ledger.silences.active()
        if silences:
            out.append("<b>Silenced</b>\n" + "\n".join(f"🔇 {_silence_line(s)}" for s in silences))
        dests = self._destinations()
        dead = await self.ledger.dead_count(dests)
        if dead:
            recent = await self.ledger.dead_letters(dests, 3)
            out.append(
                f"<b>Undelivered (dead letters)</b>: {dead} parked; redelivered when the "
                "destination recovers, or with <code>stressbot deadletters retry</code>\n"
                + "\n".join(
                    f"• {e(d.dest)}: {e(d.alert_id)}: {e(d.error[:120])} ({e(d.reason)})"
                    for d in recent
                )
            )
        pend = []
        for name in self._destinations():
            n = await self.ledger.pending_count(name)
            if n:
                pend.append(f"{e(name)} {n}")
        if pend:
            out.append("<b>Waiting to be delivered</b>: " + ", ".join(pend))
        return Reply("\n\n".join(out))

    @needs_store
    async def like(self) -> Reply:
        """/like: the live engine's stress score, its components, the closest episodes."""
        gauge = (await self.store.engine_status()).get("stress")
        if not gauge:
            return Reply("No stress reading yet: the engine has not published one.")
        return Reply("<pre>" + e(format_like(gauge)) + "</pre>")

    async def _session_lines(self, now: float) -> str:
        try:
            from bot.engine.sessions import session_moves, sessions_from_config
        except ImportError:  # pragma: no cover - sessions module not present
            return "<b>Dollar by session</b>: not available"
        sessions = sessions_from_config(self.config.sessions)
        for sym in DOLLAR_SYMBOLS:
            pts = await self.store.series(sym, now - 2 * 86400, now)
            if pts:
                moves = session_moves(pts, sessions, now, 1.0)
                ref = pts[-1][1]
                parts = []
                for name, pct in moves.items():
                    if pct is None:
                        parts.append(f"{name} n/a")
                    else:
                        parts.append(f"{name} {pct:+.2f}% (≈{ref * pct / 100:+.3f} index pts)")
                return f"<b>Dollar by session ({e(sym)}, last day)</b>\n" + e(" · ".join(parts))
        return "<b>Dollar by session</b>: no dollar index data yet"

    def _destinations(self) -> list[str]:
        return self.config.notify.destination_names

    # ---- /rules ----------------------------------------------------------------------------

    @needs_store
    async def rules(self) -> Reply:
        states = await self.store.rule_states()
        if not states:
            return Reply("No rules have reported a state yet.")
        silences = await self.ledger.silences.active()
        icon = {"firing": "🔴", "pending": "🟡", "inactive": "🟢"}
        lines = ["<b>Rules</b>"]
        for r, s in sorted(states.items()):
            st = str(s.get("state", "?"))
            extra = ""
            if st == "firing":
                extra = f" since {_ts_text(s.get('firing_since'))}"
            elif st == "pending":
                extra = f" since {_ts_text(s.get('pending_since'))}"
            if s.get("last_sent"):
                extra += f"; last alert {_ts_text(s.get('last_sent'))}"
            probe = Alert(r, 0.0, r, str(s.get("pattern", "")), str(s.get("severity", "")), "")
            muted = silencing(silences, probe, time.time()) is not None
            lines.append(
                f"{icon.get(st, '⚪')} <b>{e(r)}</b> [{e(str(s.get('severity', '')))}"
                f", {e(str(s.get('pattern', '')))}]: {e(st)}{e(extra)}" + (" 🔇" if muted else "")
            )
        return Reply("\n".join(lines))

    # ---- /mute /unmute ----------------------------------------------------------------------

    @needs_store
    async def mute(self, args: list[str], requested_by: str = "") -> Reply:
        if len(args) != 2:
            raise CommandError("Usage: /mute RULE|all DURATION, e.g. /mute btc_crash 2h")
        target, dur = args
        try:
            seconds = parse_duration(dur)
        except DurationError as ex:
            raise CommandError(f"{ex}. Usage: /mute RULE|all DURATION") from None
        if not MIN_MUTE <= seconds <= MAX_MUTE:
            raise CommandError("A mute lasts from 1m to 30d.")
        key = await self._rule_or_all(target)
        until = time.time() + seconds
        await self.ledger.silences.mute(key, until, author=requested_by)
        log.info("mute %s until %s", key, _ts_text(until))
        what = "all alerts" if key == ALL else f"rule <b>{e(key)}</b>"
        return Reply(
            f"🔇 Muted {what} for {e(format_duration(seconds))}, until "
            f"{e(_now_text(until, self.zone))}."
        )

    @needs_store
    async def unmute(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError("Usage: /unmute [RULE|all]")
        if not args:
            n = await self.ledger.unmute(None)
            return Reply("🔔 All mutes removed." if n else "Nothing was muted.")
        key = await self._rule_or_all(args[0])
        n = await self.ledger.unmute(key)
        what = "all alerts" if key == ALL else f"rule <b>{e(key)}</b>"
        return Reply(f"🔔 Unmuted {what}." if n else f"{what[:1].upper()}{what[1:]} was not muted.")

    async def _rule_or_all(self, target: str) -> str:
        if target.lower() == "all":
            return ALL
        states = await self.store.rule_states()
        if target not in states:
            known = ", ".join(sorted(states)[:20]) or "none yet"
            raise CommandError(f"Unknown rule {shown(target)!r}. Known rules: {known}.")
        return target

    # ---- /silence /silences /unsilence --------------------------------------------------------

    @needs_store
    async def silence(self, args: list[str], requested_by: str = "") -> Reply:
        """``/silence MATCHER... DURATION [COMMENT...]``: matchers first, then how long, then
        the comment (every word after the duration)."""
        usage = "Usage: /silence MATCHER... DURATION [COMMENT], e.g. /silence rule=btc_crash 2h"
        words = list(args)
        everything = bool(words) and words[0].lower() == "all"  # no matchers: every alert
        if everything:
            words.pop(0)
        matchers: list[Matcher] = []
        while words and not _is_duration(words[0]):
            try:
                matchers.append(Matcher.parse(words.pop(0)))
            except SilenceError as ex:
                raise CommandError(f"{ex}. {usage}") from None  # the matcher is cut in it
        if not words or everything == bool(matchers):
            raise CommandError(f"Give matchers (or all), then a duration. {usage}")
        seconds = parse_duration(words.pop(0))
        if not MIN_MUTE <= seconds <= MAX_MUTE:
            raise CommandError("A silence lasts from 1m to 30d.")
        comment = " ".join(words)
        s = await self.ledger.silences.add(
            matchers, ends=time.time() + seconds, author=requested_by, comment=comment
        )
        log.info("silence %s (%s) until %s by %s", s.id, s.describe(), _ts_text(s.ends), s.author)
        return Reply(f"🔇 Silence <code>{e(s.id)}</code>: {_silence_line(s)}")

    @needs_store
    async def silences(self) -> Reply:
        now = time.time()
        every = [s for s in await self.ledger.silences.all(now) if s.state(now) != "expired"]
        if not every:
            return Reply("No silences. Set one with /silence or /mute.")
        lines = [f"<b>Silences</b> ({len(every)})"]
        for s in every:
            pending = " (not started yet)" if s.state(now) == "pending" else ""
            lines.append(f"• <code>{e(s.id)}</code>{pending}: {_silence_line(s)}")
        lines.append("End one with /unsilence ID.")
        return Reply("\n".join(lines))

    @needs_store
    async def unsilence(self, args: list[str]) -> Reply:
        if len(args) != 1:
            raise CommandError("Usage: /unsilence ID (the ids are in /silences)")
        gone = await self.ledger.silences.remove(args)
        if not gone:
            raise CommandError(f"No silence {shown(args[0])!r}; see /silences for the ids.")
        return Reply(f"🔔 Silence <code>{e(gone[0])}</code> ended.")

    # ---- /history ---------------------------------------------------------------------------

    @needs_store
    async def history(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError("Usage: /history [N]")
        n = 10
        if args:
            # ASCII digits only: str.isdigit() is also true of '²' and '٣', which int() refuses
            if not _NUMBER.fullmatch(args[0]) or not 1 <= int(args[0]) <= MAX_HISTORY:
                raise CommandError(f"N must be a whole number from 1 to {MAX_HISTORY}.")
            n = int(args[0])
        recent = await self.store.recent_alerts(4 * n + 20)  # heartbeats are not shown
        alerts = [(i, a) for i, a in recent if not is_heartbeat(a)][:n]
        if not alerts:
            return Reply("No alerts yet.")
        lines = [f"<b>Last {len(alerts)} alerts</b> (newest first)"]
        for _, a in alerts:
            icon = (
                "✅"
                if a.kind is AlertKind.RESOLVED
                else {"critical": "🔴", "warning": "🟠"}.get(a.severity, "🔵")
            )
            lines.append(f"{icon} {e(_ts_text(a.ts))} <b>{e(a.rule)}</b>: {e(a.summary[:200])}")
        return Reply("\n".join(lines))

    # ---- /chart -----------------------------------------------------------------------------

    @needs_store
    async def chart(self, args: list[str]) -> Reply:
        window = 86400.0
        words = list(args)
        if words:
            try:
                window = parse_duration(words[-1])
                words.pop()
            except DurationError:
                pass
        if not 300 <= window <= MAX_CHART_WINDOW:
            raise CommandError("WINDOW must be from 5m to 7d, e.g. 24h.")
        symbols = [s.strip().upper() for w in words for s in w.split(",") if s.strip()]
        unknown = [s for s in symbols if s not in SYMBOLS]
        if unknown:
            raise CommandError(
                f"Unknown symbol {shown(unknown[0])!r}. Known: {', '.join(sorted(SYMBOLS))}."
            )
        if len(symbols) > 6:
            raise CommandError("At most 6 symbols in one chart.")
        latest = await self.store.latest()
        if not symbols:
            defaults: tuple[str, ...] = ("BTC/USD", "USDX", "DXY", "US10Y")
            symbols = [s for s in defaults if s in latest][:3]
            if not symbols:
                raise CommandError("No data yet to chart.")
        now = await self.clock()
        series = {s: await self.store.series(s, now - window, now) for s in symbols}
        probe = Alert(
            id="chart",
            ts=now,
            rule="chart",
            pattern="custom",
            severity="info",
            summary="",
            symbols=symbols,
            window=window,
        )
        try:
            png = await asyncio.wait_for(
                asyncio.to_thread(self.renderer, probe, series, self.zone),
                self.config.notify.delivery.chart_timeout,
            )
        except Exception as ex:  # the reply must still say what happened
            log.warning("/chart failed: %s: %s", type(ex).__name__, ex)
            return Reply(f"Could not draw the chart: {e(str(ex)[:200])}")
        caption = f"{e(', '.join(symbols))} over {e(format_duration(window))}"
        return Reply(caption, photo=png)

    # ---- /sessions ---------------------------------------------------------------------------

    @needs_store
    async def sessions(self, args: list[str]) -> Reply:
        """The session dollar chart over the last DAYS days of the dollar index in the store."""
        from bot.engine.sessions import DAY, sessions_from_config

        days = DEFAULT_DAYS
        if len(args) > 1 or (args and not _NUMBER.fullmatch(args[0])):
            raise CommandError("Usage: /sessions [DAYS], e.g. /sessions 10 (1 to 30 days).")
        if args:
            days = float(args[0])
        if not 1 <= days <= MAX_SESSION_DAYS:
            raise CommandError(f"DAYS must be from 1 to {MAX_SESSION_DAYS:.0f}.")
        now = await self.clock()
        start = now - days * DAY - DAY  # the oldest session may start a day before
        for sym in DOLLAR_SYMBOLS:
            pts = await self.store.series(sym, start - DAY, now)
            if len(pts) >= 2:
                break
        else:
            return Reply("No dollar index data yet (USDX or DXY) to split by session.")
        rates = {RATE_SYMBOL: await self.store.series(RATE_SYMBOL, start - 5 * DAY, now)}
        sessions = sessions_from_config(self.config.sessions)
        try:
            png, paths = await asyncio.wait_for(
                asyncio.to_thread(
                    draw_sessions,
                    sym,
                    pts,
                    sessions,
                    now=now,
                    days=days,
                    zone=self.zone,
                    rates=rates,
                ),
                self.config.notify.delivery.chart_timeout,
            )
        except Exception as ex:  # the reply must still say what happened
            log.warning("/sessions failed: %s: %s", type(ex).__name__, ex)
            return Reply(f"Could not draw the session chart: {e(str(ex)[:200])}")
        held = ""
        if pts[0][0] > now - days * DAY:
            held = f" (data held only since {e(_ts_text(pts[0][0]))})"
        caption = f"<b>{e(sym)} by session, {days:g} days</b>{held}\n{e(summary_line(paths))}"
        return Reply(caption, photo=png)

    # ---- /test ------------------------------------------------------------------------------

    @needs_store
    async def test(self, args: list[str], requested_by: str) -> Reply:
        sev = args[0].lower() if args else "info"
        if len(args) > 1 or sev not in ("info", "warning", "critical"):
            raise CommandError("Usage: /test [info|warning|critical]")
        now = time.time()
        a = Alert(
            id=f"test:{uuid.uuid4().hex[:12]}",
            ts=now,
            rule="test",
            pattern="custom",
            severity=sev,
            summary=f"Test alert requested by {requested_by}. "
            "If you can read this, delivery works.",
            values={"test_value": 42.0},
            symbols=[],
            window=0.0,
        )
        await self.store.publish_alert(a)
        n = self.config.notify
        routes = [*n.telegram.chats, *n.discord.webhooks]
        to = [r.name for r in routes if accepts(r, a)]
        where = ", ".join(to) if to else "no destination (check the routing in [notify])"
        return Reply(f"🧪 Test alert <code>{e(a.id)}</code> ({e(sev)}) queued for: {e(where)}.")


def _is_duration(word: str) -> bool:
    try:
        parse_duration(word)
    except DurationError:
        return False
    return True


def _silence_line(s: Silence) -> str:
    """One silence as /status and /silences show it (HTML, escaped)."""
    by = f" by {e(s.author)}" if s.author else ""
    note = f" · {e(shown(s.comment))}" if s.comment else ""
    held = f" · {s.suppressed} message(s) held back" if s.suppressed else ""
    return f"{e(s.describe())} until {e(_ts_text(s.ends))}{by}{note}{held}"


def _ts_text(ts: Any) -> str:
    if ts is None:
        return "?"
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return "?"
