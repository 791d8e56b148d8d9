"""Replay of real history: the default rules on the 312 and 519 episodes and on 2019-2021,
and a replay killed half way then resumed gives the same alerts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.core.models import Alert, AlertKind, parse_iso_utc
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.replay import ReplayOptions, run_replay
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT, shared_path

#: Real stress episodes in 2019-2021, where alerts are expected.
EPISODES = [
    ("2019-09-16", "2019-10-31"),  # repo-market stress (SOFR spike, Fed repo operations)
    ("2020-02-20", "2020-04-30"),  # COVID crash and the dash for cash
    ("2021-05-12", "2021-05-24"),  # the 19 May crypto crash
]


async def replay(store: Store, *files: Path, **kw: object) -> list[Alert]:
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    result = await run_replay(
        ReplayOptions(files=list(files), **kw),  # type: ignore[arg-type]
        config,
        store,
        rules,
    )
    return result.alerts


def firing(alerts: list[Alert], rule: str | None = None) -> list[Alert]:
    return [a for a in alerts if a.kind is AlertKind.FIRING and rule in (None, a.rule)]


def day(a: Alert) -> str:
    return datetime.fromtimestamp(a.ts, UTC).strftime("%Y-%m-%d")


@pytest.mark.shared
async def test_312_raises_a_liquidity_crisis_alert_in_the_dash_for_cash(store: Store) -> None:
    alerts = await replay(store, shared_path("data", "history", "episode-312.csv"))
    lc = firing(alerts, "liquidity_crisis")
    assert lc, "no liquidity_crisis alert on the 312 episode"
    assert all("2020-03-09" <= day(a) <= "2020-03-20" for a in lc)
    assert lc[0].severity == "critical"
    assert lc[0].values["btc"] < -10 and lc[0].values["gold"] < 0 and lc[0].values["usd"] > 0


@pytest.mark.shared
async def test_519_is_a_crypto_crash_not_a_liquidity_crisis(store: Store) -> None:
    alerts = await replay(store, shared_path("data", "history", "episode-519.csv"))
    cc = firing(alerts, "crypto_crash")
    assert cc and all("2021-05-12" <= day(a) <= "2021-05-24" for a in cc)
    assert firing(alerts, "liquidity_crisis") == []


@pytest.mark.shared
async def test_2019_to_2021_funding_stress_in_september_2019_and_quiet_otherwise(
    store: Store,
) -> None:
    alerts = await replay(store, shared_path("data", "history", "dev-2019-2021.csv.gz"))
    assert any(day(a).startswith("2019-09") for a in firing(alerts, "funding_stress"))
    outside = {day(a) for a in firing(alerts) if not any(lo <= day(a) <= hi for lo, hi in EPISODES)}
    months = 36 - 4  # the episodes cover about four months
    assert len(outside) <= months, f"{len(outside)} alert-days outside the episodes: {outside}"


@pytest.mark.shared
async def test_from_only_warms_windows_before_it(store: Store) -> None:
    start = parse_iso_utc("2020-03-15T00:00:00Z")
    alerts = await replay(store, shared_path("data", "history", "episode-312.csv"), start=start)
    assert alerts and all(a.ts >= start for a in alerts)


def _cli(prefix: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    cfg = tmp_path / f"{prefix}.toml"
    cfg.write_text(f'[redis]\nprefix = "{prefix}"\n[engine]\ncheckpoint_every = "0.05s"\n')
    env = {**os.environ, "REDIS_URL": REDIS_URL}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "replay", *args, "--config", str(cfg), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _outbox(redis: Redis, prefix: str) -> list[str]:
    entries = await redis.xrange(f"{prefix}:replay:outbox")
    return [json.loads(f[b"alert"])["id"] for _, f in entries]


@pytest.mark.shared
async def test_kill_9_half_way_then_resume_gives_the_same_alerts(
    redis: Redis, tmp_path: Path
) -> None:
    data = str(shared_path("data", "history", "dev-2019-2021.csv.gz"))
    p_full, p_kill = f"test:{uuid.uuid4().hex[:8]}", f"test:{uuid.uuid4().hex[:8]}"
    try:
        full = _cli(p_full, tmp_path, data)
        assert full.wait(timeout=120) == 0, full.stderr.read() if full.stderr else ""
        expected = await _outbox(redis, p_full)
        assert len(expected) > 10

        killed = _cli(p_kill, tmp_path, data, "--rate", "60000")
        # kill it once the checkpoint is past March 2020 (some alerts out, more to come)
        for _ in range(1200):
            pos = await redis.hget(f"{p_kill}:replay:checkpoint", "position")
            if pos and pos != b"end" and int(pos.split(b":")[1]) > 70000:
                break
            await asyncio.sleep(0.025)
        else:
            pytest.fail("the replay never reached the kill point")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        partial = await _outbox(redis, p_kill)
        assert 0 < len(partial) < len(expected)

        resumed = _cli(p_kill, tmp_path, data, "--resume")
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert "resumed from" in out
        assert await _outbox(redis, p_kill) == expected
    finally:
        for p in (p_full, p_kill):
            keys = [k async for k in redis.scan_iter(match=f"{p}:*")]
            if keys:
                await redis.delete(*keys)


@pytest.mark.shared
async def test_resume_refuses_a_checkpoint_of_other_input(redis: Redis, tmp_path: Path) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    try:
        first = _cli(prefix, tmp_path, str(shared_path("data", "history", "episode-519.csv")))
        assert first.wait(timeout=60) == 0
        other = _cli(
            prefix, tmp_path, str(shared_path("data", "history", "episode-312.csv")), "--resume"
        )
        _, err = other.communicate(timeout=60)
        assert other.returncode == 2
        assert "belongs to another replay" in err
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)


@pytest.mark.shared
def test_jsonl_has_one_object_per_alert_with_the_numbers(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    proc = _cli(
        f"test:{uuid.uuid4().hex[:8]}",
        tmp_path,
        str(shared_path("data", "history", "episode-312.csv")),
        "--jsonl",
        str(out),
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    for r in rows:
        assert {"ts", "rule", "pattern", "severity", "summary", "values"} <= r.keys()
        assert r["ts"].endswith("Z")
    assert "ticks read" in stdout and "ticks/s" in stdout


@pytest.mark.shared
def test_replay_without_a_redis_server_uses_the_embedded_store(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "replay",
            "--quiet",
            str(shared_path("data", "history", "episode-519.csv")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "embedded in-process store" in r.stderr
    assert "crypto_crash" in r.stdout


@pytest.mark.shared
async def test_demo_prints_the_dash_for_cash_alert_readably(redis: Redis, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": REDIS_URL}
    cfg = tmp_path / "demo.toml"
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    cfg.write_text(f'[redis]\nprefix = "{prefix}"\n')
    cmd = [
        sys.executable,
        "-m",
        "bot.cli",
        "demo",
        "--quiet",
        "--config",
        str(cfg),
        "--data",
        str(shared_path("data", "history", "episode-312.csv")),
    ]
    r = await asyncio.to_thread(
        subprocess.run, cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    assert "2020-03-12 17:00 UTC  CRITICAL  liquidity_crisis: Dash for cash" in r.stdout
    assert "Replay summary" in r.stdout
