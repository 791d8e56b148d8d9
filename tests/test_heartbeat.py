"""The deadman heartbeat (issue 12): `stressbot run` (a real subprocess) sends heartbeats through
the outbox to the fake Telegram chat that asks for them, they stop when the process is
SIGSTOPped, and /metrics (rendered here from the same store) shows their age growing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from bot.core.models import Alert, AlertKind
from bot.notify import deliver_pending
from bot.notify.base import accepts
from bot.notify.config import TelegramChat
from bot.notify.format import alert_lines
from bot.notify.heartbeat import heartbeat_alert, stale
from bot.notify.ledger import Ledger, Mark
from bot.runtime.metrics import render
from bot.runtime.snapshot import read_snapshot
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import TOKEN_ENV, alert, notify_config, telegram_fixture

tg = telegram_fixture()
WANTS, DOESNT = -1001, -1002


def test_only_routes_that_ask_get_the_heartbeat_whatever_their_filters() -> None:
    hb = heartbeat_alert(1_700_000_000.0, 60.0)
    asks = TelegramChat(name="a", chat_id=1, heartbeat=True, severities=["critical"])
    other = TelegramChat(name="b", chat_id=2)
    assert accepts(asks, hb) and not accepts(other, hb)
    assert not stale(hb, hb.ts + 119) and stale(hb, hb.ts + 121)
    assert "HEARTBEAT" in alert_lines(hb, "UTC")[0].plain


def test_a_kind_this_version_does_not_know_is_named_in_the_title() -> None:
    a = Alert("x", 0.0, "btc_crash", "crypto_crash", "critical", "worse", kind=AlertKind.FIRING)
    object.__setattr__(a, "kind", "escalated")  # what a newer engine may write
    assert alert_lines(a, "UTC")[0].plain == "🔴 CRITICAL · ESCALATED · btc_crash"


async def test_no_silence_holds_the_heartbeat_back_and_a_stale_one_is_not_sent(
    store: Store, tg: FakeTelegram
) -> None:
    ledger = Ledger(store)
    await ledger.mute("*", time.time() + 3600)  # /mute all
    now = time.time()
    await store.publish_alert(heartbeat_alert(now, 60.0))
    await store.publish_alert(heartbeat_alert(now - 600, 60.0))  # ten intervals old
    await store.publish_alert(alert(1))
    old = heartbeat_alert(now - 900, 60.0)  # parked while the chat was down, long ago
    await ledger.park(
        "desk",
        old,
        entry_id=None,
        entry="1-0",
        reason="outage",
        error="down",
        tries=1,
        mark=Mark("partial", 0, []),
        now=now - 900,
    )
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": WANTS, "heartbeat": True}])
    report = await deliver_pending(cfg, store)
    sent = tg.to_chat(WANTS)
    assert len(sent) == 1 and "HEARTBEAT" in sent[0].visible  # the fresh one only
    assert report.destinations["desk"].muted == 1  # the rule alert was silenced
    assert report.destinations["desk"].stale == 1
    assert await ledger.parked("desk") == []
    dropped = await ledger.mark("desk", old.id)
    assert dropped is not None and dropped.status == "dropped"


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_heartbeats_arrive_stop_when_the_engine_is_stopped_and_the_metric_ages(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[redis]
prefix = "{store.prefix}"
[feeds]
enabled = false
[metrics]
enabled = false
[notify.heartbeat]
interval = "1s"
[notify.telegram]
token_env = "{TOKEN_ENV}"
api_base = "{tg.base}"
commands = false
min_interval = 0
group_min_interval = 0
global_min_interval = 0
[[notify.telegram.chats]]
name = "watchdog"
chat_id = {WANTS}
heartbeat = true
[[notify.telegram.chats]]
name = "desk"
chat_id = {DOESNT}
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--config",
        str(cfg),
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": REDIS_URL, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def beats(n: int, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while len(tg.to_chat(WANTS)) < n:
                if proc.returncode is not None:
                    raise AssertionError("stressbot run exited")
                await asyncio.sleep(0.05)

    async def scrape() -> tuple[float | None, float]:
        snap = await read_snapshot(store)
        text = render(snap, 2.0).decode()
        return _metric(text, "stressbot_heartbeat_last_timestamp_seconds"), snap.now

    try:
        await beats(3)
        assert all("HEARTBEAT" in s.visible for s in tg.to_chat(WANTS))
        proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)  # anything the process had written is on its way
            stopped_at = len(tg.to_chat(WANTS))
            last1, now1 = await scrape()
            await asyncio.sleep(3.0)  # three intervals
            last2, now2 = await scrape()
            assert len(tg.to_chat(WANTS)) == stopped_at  # no heartbeat while it is stopped
        finally:
            proc.send_signal(signal.SIGCONT)
        assert last1 is not None and last1 == last2  # the timestamp stands still ...
        assert now2 - last2 >= (now1 - last1) + 2.5  # ... so its age grows with the pause
        assert now2 - last2 > 3.0  # past the interval: an alert rule would fire here
        await beats(stopped_at + 1)  # and they come back with the process
        last3, _ = await scrape()
        assert last3 is not None and last3 > last2
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert tg.to_chat(DOESNT) == []  # the desk did not ask for heartbeats
    assert time.time() - last3 < 60
