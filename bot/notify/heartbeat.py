"""The deadman heartbeat, like Alertmanager's Watchdog: an alert that always fires.

While the live engine consumes ticks (it holds the engine lease), it writes a heartbeat into
the outbox every ``notify.heartbeat.interval`` (:func:`beat`, called from
``EngineService``), so a heartbeat goes the way every alert goes: outbox, consumer group,
worker, platform. It is delivered only to the destinations that ask for it (``heartbeat =
true``), whatever their severity, pattern and rule filters, and no silence holds it back (a
``/mute all`` must not page whoever watches for the heartbeat to stop). A heartbeat older than
:data:`FRESH_FOR` intervals when its turn comes (a notifier that was down) is acknowledged
without sending: only a fresh one says anything.

The time of the last heartbeat is kept in the engine's status record (``heartbeat``), which
``/metrics`` exports as ``stressbot_heartbeat_last_timestamp_seconds`` from whichever process
serves it, so an external Prometheus can alert when it stops moving, e.g.
``time() - stressbot_heartbeat_last_timestamp_seconds > 3 * <interval>``: the way Alertmanager's
Watchdog is watched by an outside deadman switch.
"""

from __future__ import annotations

from bot.core.models import Alert, iso_utc

PATTERN = "heartbeat"
RULE = "stressbot:heartbeat"
#: A heartbeat this many intervals old is no longer sent.
FRESH_FOR = 2.0


def heartbeat_alert(now: float, interval: float) -> Alert:
    return Alert(
        id=f"heartbeat@{iso_utc(now)}",
        ts=now,
        rule=RULE,
        pattern=PATTERN,
        severity="info",
        summary=(
            "stressbot is alive: the engine is consuming ticks and this message went the way "
            f"alerts go. The next one is due within {interval:g} s; if none comes, stressbot "
            "has stopped."
        ),
        values={"interval_s": interval},
    )


def is_heartbeat(alert: Alert) -> bool:
    return alert.pattern == PATTERN and alert.rule == RULE


def stale(alert: Alert, now: float) -> bool:
    """Whether `alert` is a heartbeat too old to be worth sending."""
    if not is_heartbeat(alert):
        return False
    interval = alert.values.get("interval_s") or 60.0
    return now - alert.ts > FRESH_FOR * max(float(interval), 1.0)
