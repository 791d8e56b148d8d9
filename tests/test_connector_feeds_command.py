"""`stressbot feeds`: every configured feed with state, last tick age, message/error counts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson
import pytest

from bot.cli.feeds import _feeds
from bot.store.redis_store import Store


def write_config(tmp_path: Path, prefix: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(f"""
[redis]
prefix = "{prefix}"

[feeds.sources.kraken]
kind = "kraken"
symbols = {{ "XBT/USD" = "BTC/USD" }}

[feeds.sources.nyfed]
kind = "nyfed"

[feeds.sources.oanda]
kind = "oanda"
enabled = false
symbols = {{ "EUR_USD" = "EUR/USD" }}
""")
    return p


async def test_lists_every_configured_feed_with_health(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    await store.set_feed_status(
        "kraken",
        {
            "state": "stale",
            "since": now - 90,
            "last_tick_ts": now - 95,
            "last_tick_age": 95.0,
            "msgs": 1200,
            "ticks": 1100,
            "errors": 3,
            "dropped": {"duplicate": 2},
            "detail": "no data for 60s while the market is open",
            "kind": "kraken",
            "updated": now - 30.0,
        },
    )
    args = argparse.Namespace(config=write_config(tmp_path, store.prefix), json=False)
    code = await _feeds(args)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["FEED", "KIND", "SYMBOLS", "STATE"]
    kraken = next(x for x in lines if x.startswith("kraken"))
    assert "stale" in kraken and "1200" in kraken and "1100" in kraken
    assert "duplicate=2" in kraken and "1m35s" in kraken and "30s ago" in kraken
    assert "no report yet" in next(x for x in lines if x.startswith("nyfed"))
    assert "disabled" in next(x for x in lines if x.startswith("oanda"))
    assert code == 1  # a stale feed: non-zero, for scripts and health checks


async def test_json_output_has_the_counts(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    await store.set_feed_status(
        "kraken",
        {
            "state": "ok",
            "since": now - 10,
            "last_tick_ts": now,
            "last_tick_age": 0.2,
            "msgs": 5,
            "ticks": 4,
            "errors": 0,
            "dropped": {},
            "detail": "receiving data",
            "kind": "kraken",
            "updated": now,
        },
    )
    args = argparse.Namespace(config=write_config(tmp_path, store.prefix), json=True)
    assert await _feeds(args) == 0
    rows = orjson.loads(capsys.readouterr().out)
    k = next(r for r in rows if r["feed"] == "kraken")
    assert (k["state"], k["msgs"], k["ticks"], k["errors"]) == ("ok", 5, 4, 0)
