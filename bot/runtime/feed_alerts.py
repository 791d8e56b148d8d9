"""Feed health as alerts, with a pending period and grouping (Alertmanager's `for` and
`group_wait`, issue 12).

The live engine polls the feeds' health records every couple of seconds and hands them to
:meth:`FeedAlerts.observe`, which returns the alerts to raise (through the engine, so the
rules' inhibitions apply):

- **Pending**: a feed that is stale or down for less than ``engine.feed_alert_after``
  (default 2 minutes) says nothing; a websocket that reconnects in 2 seconds never sends
  "down" and then "resolved". A feed that is merely ``starting`` (reconnecting) neither
  starts nor ends its trouble.
- **Grouping**: a feed due (down for the pending period) waits ``engine.feed_alert_group``
  (default 30 s) for others; every feed due by then is named in one message. The group is
  resolved, in one message, once all of its feeds are healthy again.

Alert ids are deterministic: ``feed:NAME@<first down time>`` for one feed (as before), and
``feed:A+B@<first down time>`` for a group; ``:resolved`` for the recovery. The state of every
feed (`FeedAlertState`) is kept in the engine's checkpoint, so a restart neither repeats nor
loses one; a checkpoint written before these fields restores as "nothing pending".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.models import Alert, AlertKind, Pattern, Severity, iso_utc

UNHEALTHY = frozenset({"stale", "down"})


@dataclass
class FeedAlertState:
    """A feed's trouble: since when it is unhealthy, and under which alert it was announced."""

    state: str = "ok"
    alerted_at: float | None = None  # when its trouble was announced
    down_since: float | None = None  # first seen unhealthy in the current trouble
    group: str | None = None  # the alert rule it was announced under (feed:A or feed:A+B)


class FeedAlerts:
    def __init__(self, pending_for: float, group_wait: float) -> None:
        self.pending_for = pending_for
        self.group_wait = group_wait
        self.feeds: dict[str, FeedAlertState] = {}

    def dump(self) -> dict[str, dict[str, Any]]:
        return {k: vars(v) for k, v in self.feeds.items()}

    def load(self, raw: dict[str, dict[str, Any]]) -> None:
        known = set(vars(FeedAlertState()))
        self.feeds = {
            k: FeedAlertState(**{f: x for f, x in v.items() if f in known}) for k, v in raw.items()
        }
        for name, fa in self.feeds.items():  # announced before groups were kept: its own
            if fa.alerted_at is not None:
                fa.group = fa.group or f"feed:{name}"
                fa.down_since = fa.down_since or fa.alerted_at

    def observe(self, statuses: dict[str, dict[str, Any]], now: float) -> list[Alert]:
        """The alerts the feeds' health records `statuses` call for at wall time `now`."""
        for name, st in statuses.items():
            state = str(st.get("state", "ok"))
            fa = self.feeds.setdefault(name, FeedAlertState())
            fa.state = state
            if state in UNHEALTHY:
                if fa.down_since is None:
                    fa.down_since = now
            elif state != "starting" and fa.alerted_at is None:
                fa.down_since = None  # back inside the pending period: nothing to say
        out = self._resolved(statuses, now)
        due = {
            n: fa
            for n, fa in sorted(self.feeds.items())
            if fa.alerted_at is None
            and fa.state in UNHEALTHY
            and fa.down_since is not None
            and now - fa.down_since >= self.pending_for
        }
        if due:
            first = min(fa.down_since or now for fa in due.values()) + self.pending_for
            if now - first >= self.group_wait:
                out.append(self._down(due, statuses, now))
        return out

    def _down(
        self, due: dict[str, FeedAlertState], statuses: dict[str, dict[str, Any]], now: float
    ) -> Alert:
        names = list(due)
        rule = "feed:" + "+".join(names)
        since = min(fa.down_since or now for fa in due.values())
        for fa in due.values():
            fa.alerted_at, fa.group = now, rule
        if len(names) == 1:
            summary = f"Feed {names[0]} is {_what(statuses.get(names[0], {}), now)}"
        else:
            parts = [f"{n} ({_what(statuses.get(n, {}), now)})" for n in names]
            summary = f"{len(names)} feeds down: " + "; ".join(parts)
        return _alert(rule, since, now, summary, AlertKind.FIRING)

    def _resolved(self, statuses: dict[str, dict[str, Any]], now: float) -> list[Alert]:
        groups: dict[str, list[str]] = {}
        for n, fa in sorted(self.feeds.items()):
            if fa.group is not None:
                groups.setdefault(fa.group, []).append(n)
        out = []
        for rule, names in groups.items():
            members = [self.feeds[n] for n in names]
            if any(fa.state in UNHEALTHY or fa.state == "starting" for fa in members):
                continue
            since = min(fa.down_since or fa.alerted_at or now for fa in members)
            for fa in members:
                fa.alerted_at = fa.down_since = fa.group = None
            if len(names) == 1:
                summary = f"Resolved: feed {names[0]} is {members[0].state} again"
            else:
                summary = f"Resolved: feeds {', '.join(names)} are ok again"
            out.append(_alert(rule, since, now, summary, AlertKind.RESOLVED))
        return out


def _what(st: dict[str, Any], now: float) -> str:
    state = str(st.get("state"))
    detail = str(st.get("detail") or "")
    last = st.get("last_tick_ts")
    age = f"; last tick {now - float(last):.0f} s ago" if last else ""
    return f"{state}{age}" + (f": {detail}" if detail else "")


def _alert(rule: str, since: float, now: float, summary: str, kind: AlertKind) -> Alert:
    return Alert(
        id=f"{rule}@{iso_utc(since)}" + (":resolved" if kind is AlertKind.RESOLVED else ""),
        ts=now,
        rule=rule,
        pattern=Pattern.FEED_HEALTH.value,
        severity=Severity.WARNING.value,
        summary=summary,
        kind=kind,
    )
