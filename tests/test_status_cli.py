"""`stressbot status`: rules, feeds and who serves each symbol, the engine leader and standbys,
the outbox and parked alerts per destination, read from a real Redis; `--json` for scripts."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.cli.main import main
from bot.cli.status import _status
from bot.core.models import Alert, iso_utc
from bot.notify.ledger import OUTAGE, Ledger
from bot.notify.silences import Matcher, Silences
from bot.store.redis_store import Checkpoint, Store
from tests.conftest import ROOT


def write_config(tmp_path: Path, prefix: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(f"""
[redis]
prefix = "{prefix}"

[display]
timezone = "America/New_York"

[feeds.sources.kraken]
kind = "kraken"
symbols = {{ "XBT/USD" = "BTC/USD" }}

[feeds.sources.okx]
kind = "ccxt"
exchange = "okx"
symbols = {{ "BTC/USDT" = "BTC/USD" }}

[[notify.telegram.chats]]
name = "desk"
chat_id = 4242

[[notify.telegram.chats]]
name = "quiet"
chat_id = 4343
""")
    return p


def _alert(i: int) -> Alert:
    ts = time.time() - 60
    return Alert(f"crypto_crash@{i}", ts, "crypto_crash", "crypto_crash", "warning", "x")


async def _fill(store: Store) -> dict[str, Any]:
    now = time.time()
    t = {"pending": now - 300, "firing": now - 120, "sent": now - 120}
    await store.commit(
        Checkpoint("0-0", "fp", now - 30, b"{}"),
        [_alert(1), _alert(2)],
        rule_states={
            "crypto_crash": {
                "state": "firing",
                "severity": "critical",
                "pattern": "crypto_crash",
                "pending_since": t["pending"],
                "firing_since": t["firing"],
                "last_sent": t["sent"],
            },
            "rates_shock": {"state": "pending", "severity": "warning", "pending_since": now - 5},
        },
    )
    base = {"kind": "kraken", "msgs": 10, "ticks": 9, "errors": 0, "dropped": {}}
    # kraken's process is gone: its record says ok and serving, ten minutes ago
    await store.set_feed_status(
        "kraken", {**base, "state": "ok", "serving": ["BTC/USD"], "updated": now - 600}
    )
    await store.set_feed_status(
        "okx",
        {**base, "kind": "ccxt", "state": "ok", "serving": ["BTC/USD"], "updated": now},
    )
    ours, _ = await store.acquire_engine_lease("hostA/1/abc", 5.0)
    assert ours is not None
    await store.set_engine_status({"state": "live", "fence": ours, "heartbeat": now - 20})
    await store.set_engine_standby("hostB/2/def", {"role": "standby", "updated": now})
    await store.ensure_group("notify:desk")
    await store.read_group("notify:desk", "c1", count=1, block_ms=None)
    ledger = Ledger(store)
    await ledger.park(
        "desk",
        _alert(0),
        entry_id=None,
        entry="1-0",
        reason=OUTAGE,
        error="connection refused",
        tries=3,
        mark=None,
        now=now,
    )
    await ledger.outage_begin("desk", now - 90, "connection refused", gap=600)
    sil = Silences(store)
    crit = [Matcher.parse("severity=~crit.*")]
    t["silence"] = (await sil.add(crit, ends=now + 3600, author="ops", comment="drill")).id
    await sil.add([Matcher.parse("rule=rates_shock")], starts=now + 600, ends=now + 3600)
    return t


async def test_json_has_rules_feeds_leader_and_outbox(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = await _fill(store)
    args = argparse.Namespace(config=write_config(tmp_path, store.prefix), json=True)
    assert await _status(args) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["schema"] == "stressbot.status/1"
    rules = {r["rule"]: r for r in doc["rules"]}
    cc = rules["crypto_crash"]
    assert cc["state"] == "firing" and cc["severity"] == "critical"
    assert cc["pending_since"] == iso_utc(t["pending"])
    assert cc["last_fired"] == iso_utc(t["sent"]) and cc["last_fired"].endswith("Z")
    assert rules["rates_shock"]["state"] == "pending" and rules["rates_shock"]["last_fired"] is None
    # the critical crypto_crash is silenced; rates_shock's silence has not started yet
    assert cc["silenced_by"] == t["silence"] and rules["rates_shock"]["silenced_by"] is None
    assert [(x["state"], x["matchers"]) for x in doc["silences"]] == [
        ("active", "severity=~crit.*"),
        ("pending", "rule=rates_shock"),
    ]
    feeds = {f["feed"]: f for f in doc["feeds"]}
    assert feeds["kraken"]["state"] == "no report"  # its process is gone: not "ok"
    assert feeds["okx"]["state"] == "ok"
    (btc,) = [s for s in doc["symbols"] if s["symbol"] == "BTC/USD"]
    assert btc["serving"] == ["okx"]  # the gone kraken serves nothing
    assert {"feed": "kraken", "role": "down"} in btc["sources"]
    eng = doc["engine"]
    assert eng["leader"] == "hostA/1/abc" and eng["state"] == "live"
    assert eng["standby"] == ["hostB/2/def"] and isinstance(eng["fencing_token"], int)
    assert eng["lag_s"] >= 30
    assert eng["last_heartbeat"] is not None and eng["last_heartbeat"].endswith("Z")
    ob = doc["outbox"]
    assert ob["length"] == 2
    dests = {d["destination"]: d for d in ob["destinations"]}
    assert dests["desk"]["unacked"] == 1 and dests["desk"]["parked"] == 1
    assert dests["desk"]["failures"] == 1 and dests["desk"]["error"] == "connection refused"
    assert dests["quiet"] == {
        "destination": "quiet",
        "unacked": 0,
        "unread": None,
        "parked": 0,
        "failing_since": None,
        "failures": None,
        "error": None,
    }


async def test_text_shows_times_with_their_zone(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = await _fill(store)
    args = argparse.Namespace(config=write_config(tmp_path, store.prefix), json=False)
    assert await _status(args) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert " UTC · " in head and "(America/New_York)" in head
    cc = next(x for x in out.splitlines() if x.startswith("crypto_crash"))
    assert "firing" in cc and iso_utc(t["sent"]).replace("T", " ").replace("Z", " UTC") in cc
    assert "no report" in next(x for x in out.splitlines() if x.startswith("kraken"))
    assert "engine: leader hostA/1/abc" in out and "1 standing by (hostB/2/def)" in out
    assert "engine heartbeat " in out and "s ago)" in out
    desk = next(x for x in out.splitlines() if x.startswith("desk"))
    assert desk.split()[:4] == ["desk", "1", "1", "1"]  # unacked, unread, parked
    assert "failing since" in desk and "connection refused" in desk
    sil = next(x for x in out.splitlines() if x.startswith(t["silence"]))
    assert "active" in sil and "severity=~crit.*" in sil and "(ops, drill)" in sil
    assert cc.rstrip().endswith(t["silence"])  # the rule's SILENCED BY column


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_unreachable_redis_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = {"REDIS_URL": "redis://127.0.0.1:9/0"}
    r = _cli("status", env=gone)  # a real process: what a user sees
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("stressbot: cannot reach Redis at redis://127.0.0.1:9/0")
    monkeypatch.setenv("REDIS_URL", gone["REDIS_URL"])
    assert main(["status", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("stressbot: cannot reach Redis")


def test_a_directory_as_config_is_one_line_naming_it_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Docker bind-mounts a missing ./config.toml as an empty directory
    d = tmp_path / "config.toml"
    d.mkdir()
    r = _cli("run", "--config", str(d))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line == (
        f"stressbot: {d}: is a directory, not a config file (with Docker, create ./config.toml "
        "before starting: a missing file is mounted as an empty directory)"
    )
    assert main(["status", "--config", str(d)]) == 2
    assert capsys.readouterr().err.strip() == line
