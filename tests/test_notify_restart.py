"""Exactly-once delivery across `kill -9` and restart of a real notifier process.

The notifier runs as a subprocess (``python -m bot.notify serve``) against the fake servers
in this process. The fake kills it with SIGKILL at chosen requests, before accepting them (the
crash lands while a request is in flight), and the test restarts it until everything is
delivered. Then each alert id must have arrived exactly once, in outbox order.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.notify.service import REPEAT_NOTE
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT
from tests.fake_discord import FakeDiscord, Posted
from tests.fake_telegram import FakeTelegram, Sent
from tests.notify_fixtures import HOOK_ID, HOOK_TOKEN, TOKEN_ENV, alert, notify_config, notify_toml

N = 10


class Runner:
    """Starts the notifier process, restarts it after each kill, collects its stderr."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def ensure_running(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            self.starts += 1
            with self.log.open("ab") as err:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot.cli",
                    "notify",
                    "serve",
                    "--config",
                    str(self.config),
                    cwd=ROOT,
                    env=self.env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err,
                )

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def run_until(self, done: Callable[[], bool], limit: float = 60.0) -> None:
        async with asyncio.timeout(limit):
            while not done():
                await self.ensure_running()
                await asyncio.sleep(0.05)
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await self.proc.wait()


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    env = dict(os.environ, REDIS_URL=REDIS_URL, PYTHONPATH=str(ROOT))
    return Runner(tmp_path / "config.toml", env, tmp_path / "stderr.log")


def _tg_id(s: Sent) -> str:
    m = re.search(r"id: (\S+)", s.visible)
    assert m, s.visible
    return m.group(1)


def _dc_id(p: Posted) -> str:
    m = re.search(r"id (\S+)$", p.embeds[0]["footer"]["text"])
    assert m
    return m.group(1)


@pytest.mark.parametrize("platform", ["telegram", "discord"])
async def test_kill_9_while_a_request_is_in_flight_then_restart_delivers_exactly_once(
    platform: str, store: Store, runner: Runner
) -> None:
    for i in range(N):
        await store.publish_alert(alert(i))
    kill_at = {3, 6, 7}  # requests during which the process dies (7: right after a restart)

    async def before_accept(n: int) -> bool:
        if n in kill_at:
            await runner.kill()
            return False  # the client died before the destination accepted the message
        return True

    tg = dc = None
    if platform == "telegram":
        tg = await FakeTelegram().start()
        tg.before_accept = before_accept
        runner.env[TOKEN_ENV] = tg.token
        ids: Callable[[], list[str]] = lambda: [_tg_id(s) for s in tg.sent]  # noqa: E731
    else:
        dc = await FakeDiscord(bucket_limit=100).start()
        dc.add_webhook(HOOK_ID, HOOK_TOKEN)
        dc.before_accept = before_accept
        ids = lambda: [_dc_id(p) for p in dc.posted]  # noqa: E731
    runner.config.write_text(notify_toml(store, tg, dc))
    try:
        await runner.run_until(lambda: len(ids()) >= N)
    finally:
        for f in (tg, dc):
            if f is not None:
                await f.stop()
    assert ids() == [f"btc_crash:{i}:firing" for i in range(N)]
    assert runner.starts == 4  # three kills, three restarts
    log = runner.log.read_text()
    assert HOOK_TOKEN not in log and (tg is None or tg.token not in log)


async def test_a_crash_after_acceptance_resends_once_flagged_as_a_possible_repeat(
    store: Store, runner: Runner
) -> None:
    """The one window no Bot API idempotency closes: accepted, but the mark never written."""
    for i in range(3):
        await store.publish_alert(alert(i))
    tg = await FakeTelegram().start()
    killed = False

    async def after_accept(s: Sent) -> None:
        nonlocal killed
        if not killed and _tg_id(s) == "btc_crash:1:firing":
            killed = True
            await runner.kill()  # accepted by Telegram; the answer never reaches the bot

    tg.after_accept = after_accept
    runner.env[TOKEN_ENV] = tg.token
    runner.config.write_text(notify_toml(store, tg, None))
    try:
        await runner.run_until(lambda: len(tg.sent) >= 4)
    finally:
        await tg.stop()
    assert [_tg_id(s) for s in tg.sent] == [
        "btc_crash:0:firing",
        "btc_crash:1:firing",
        "btc_crash:1:firing",
        "btc_crash:2:firing",
    ]
    assert REPEAT_NOTE not in tg.sent[1].visible
    assert REPEAT_NOTE in tg.sent[2].visible


async def test_a_multi_part_alert_resumes_after_the_parts_already_accepted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.notify import deliver_pending

    summary = "\n".join(f"line {i:03d} " + "y" * 90 for i in range(120))  # 3 messages
    await store.publish_alert(alert(1, summary=summary))
    tg = await FakeTelegram().start()
    monkeypatch.setenv(TOKEN_ENV, tg.token)
    cfg = notify_config(store, tg)
    crashed, released = asyncio.Event(), asyncio.Event()

    async def before_accept(n: int) -> bool:
        if n == 2:  # the "process" dies while part 2 is in flight, before it is accepted
            crashed.set()
            await released.wait()
            return False
        return True

    tg.before_accept = before_accept
    try:
        first = asyncio.create_task(deliver_pending(cfg, store))
        async with asyncio.timeout(10):
            await crashed.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        released.set()
        tg.before_accept = None
        await deliver_pending(cfg, store)
    finally:
        await tg.stop()
    lines = [ln for s in tg.sent for ln in s.visible.splitlines() if ln.startswith("line ")]
    assert lines == [f"line {i:03d} " + "y" * 90 for i in range(120)]  # each line once
    assert REPEAT_NOTE in tg.sent[-1].visible  # part 2 may have been seen: said so
