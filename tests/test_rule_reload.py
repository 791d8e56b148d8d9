"""Issue 11, defect 2: one bad rule file must not kill the live bot on hot reload.

The EngineService runs on a real Redis while the test writes into its rules folder: files
that are not UTF-8, nested 600 (and thousands) deep, larger than the size limit, cut short
mid-write, random bytes, deleted, renamed away, copied in with an older mtime (``cp -p``).
Reloads are triggered by real file events (watchfiles): the poll fallback is pushed out of
reach. After each write the service is still running, and its rules are the new ones when
the folder loads cleanly, else the last good ones, with the problem in its status record.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.errors import RuleError
from bot.engine.rulefile import MAX_RULE_FILE_BYTES, load_rules
from bot.runtime import live
from bot.runtime.config import Config
from bot.runtime.live import EngineService
from bot.store.redis_store import Store
from tests.conftest import ROOT
from tests.fake_feeds import wait_until

SESSIONS = ["asia", "europe", "us"]


def rule(rid: str, when: str = 'ret("BTC/USD", "1h") < -5') -> str:
    return f"""
[[rule]]
id = "{rid}"
pattern = "custom"
severity = "info"
when = '{when}'
for = "0s"
cooldown = "1h"
summary = "{rid} fired"
"""


def deep_parens(n: int) -> str:
    return rule("deep", "(" * n + 'last("BTC/USD") > 0' + ")" * n)


def deep_not(n: int) -> str:
    return rule("deepnot", "not " * n + 'last("BTC/USD") > 0')


@pytest.fixture
async def running(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[EngineService, Path, asyncio.Task[None]]]:
    monkeypatch.setattr(live, "RULES_POLL", 3600.0)  # only real file events trigger a reload
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.toml").write_text(rule("a"))
    (rules / "b.toml").write_text(rule("b"))
    svc = EngineService(Config(), store, load_rules(rules, SESSIONS), rules_dir=rules)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await wait_until(lambda: bool(svc.status), within=30.0, what="the engine to start")
    await asyncio.sleep(0.5)  # the watcher is set up
    yield svc, rules, task
    stop.set()
    await asyncio.wait_for(task, 30.0)


def ids(svc: EngineService) -> set[str]:
    return {r.id for r in svc.rules.rules}


def expected(rules: Path, last_good: set[str]) -> set[str]:
    try:
        return {r.id for r in load_rules(rules, SESSIONS).rules}
    except RuleError:
        return last_good


async def settle(svc: EngineService, task: asyncio.Task[None], before: int) -> None:
    """The service has looked at the folder as it is now (file events only)."""

    def seen() -> bool:
        assert not task.done(), f"the engine stopped: {task.exception() if task.done() else ''}"
        return svc.reloads + svc.reload_failures > before and svc._rules_sig == svc._signature()

    await wait_until(seen, within=30.0, what="a reload triggered by the file event")


async def step(
    svc: EngineService, task: asyncio.Task[None], rules: Path, change: object
) -> set[str]:
    last_good = ids(svc)
    before = svc.reloads + svc.reload_failures
    assert callable(change)
    change()
    await settle(svc, task, before)
    want = expected(rules, last_good)
    assert ids(svc) == want
    if want == last_good and svc.reload_failures:
        assert svc.status["rules"]["state"] in ("problems", "ok")
    return want


async def test_bad_rule_file_on_hot_reload_keeps_last_good_rules(
    running: tuple[EngineService, Path, asyncio.Task[None]],
) -> None:
    svc, rules, task = running
    bad = rules / "c.toml"
    # defect 2 as reported: non-UTF-8 and 600-deep nesting
    for payload in (
        b"\xff\xfe\x00 rule \x80\x81",
        deep_parens(600).encode(),
        deep_not(600).encode(),
    ):
        failures = svc.reload_failures
        await step(svc, task, rules, lambda p=payload: bad.write_bytes(p))
        assert ids(svc) == {"a", "b"} and svc.reload_failures == failures + 1
        assert str(bad) in svc.status["rules"]["problems"][0]
    # a file over the size limit
    await step(svc, task, rules, lambda: bad.write_bytes(b"#" * (MAX_RULE_FILE_BYTES + 10)))
    assert ids(svc) == {"a", "b"} and "larger than" in svc.status["rules"]["problems"][0]
    # a good file: loaded
    assert await step(svc, task, rules, lambda: bad.write_text(rule("c"))) == {"a", "b", "c"}
    # deleted
    assert await step(svc, task, rules, bad.unlink) == {"a", "b"}
    # renamed away (no longer *.toml)
    assert await step(svc, task, rules, lambda: (rules / "b.toml").rename(rules / "b.off")) == {"a"}
    # copied in with an older mtime than everything there (cp -p)
    src = rules.parent / "old.toml"
    src.write_text(rule("old"))
    os.utime(src, (1_000_000_000, 1_000_000_000))

    def cp_p() -> None:
        shutil.copy2(src, rules / "old.toml")

    assert await step(svc, task, rules, cp_p) == {"a", "old"}
    assert (rules / "old.toml").stat().st_mtime < (rules / "a.toml").stat().st_mtime


async def test_rule_folder_fuzz_keeps_the_engine_on_the_last_good_rules(
    running: tuple[EngineService, Path, asyncio.Task[None]],
) -> None:
    svc, rules, task = running
    rng = random.Random(11)
    good = rule("fz", 'ret("BTC/USD", "1h") < -7') + rule("fz2", 'last("SOFR-IORB") > 20')
    target = rules / "fuzz.toml"
    payloads: list[bytes] = []
    for _ in range(6):
        payloads.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
    for _ in range(6):  # partial writes: a good file cut anywhere
        payloads.append(good.encode()[: rng.randrange(1, len(good))])
    payloads += [
        deep_parens(rng.randrange(300, 2000)).encode(),
        deep_not(rng.randrange(600, 5000)).encode(),
        ("x = " + "[" * 3000 + "]" * 3000).encode(),
        b"# " + b"a" * (MAX_RULE_FILE_BYTES * 4),
        good.encode(),
    ]
    rng.shuffle(payloads)
    payloads.append(good.encode())
    for p in payloads:
        await step(svc, task, rules, lambda p=p: target.write_bytes(p))
    assert ids(svc) == {"a", "b", "fz", "fz2"}
    assert svc.reload_failures >= 8 and svc.reloads >= 1
    assert not task.done()


@pytest.mark.parametrize(
    "payload, says",
    [
        (b"\xff\xfe rule", "not UTF-8 text"),
        (deep_parens(600).encode(), "deep.toml"),
        (deep_not(600).encode(), "nested too deeply"),
        (b"#" * (MAX_RULE_FILE_BYTES + 1), "larger than"),
    ],
    ids=["non-utf8", "parens-600", "not-600", "huge"],
)
def test_rules_check_prints_a_message_not_a_traceback(
    tmp_path: Path, payload: bytes, says: str
) -> None:
    (tmp_path / "deep.toml").write_bytes(payload)
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "rules", "check", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and says in out, out
    assert "1 problem(s) found" in out
