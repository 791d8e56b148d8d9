"""Must-show: `stressbot run` with the example config and a local fake exchange.

The real command runs in a subprocess; the example config is used as shipped, except that
the Kraken feed points at a fake Kraken on loopback and the feeds that would need the internet
are switched off. Ticks flow into Redis, the engine evaluates them, and a rule fires.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.core.models import AlertKind
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT, shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Script,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    redis_ticks,
    wait_until,
)

RULE = """
[[rule]]
id = "btc_live_drop"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "2s") < -5'
for = "0s"
cooldown = "1d"
summary = "BTC {r:+.1f}% in 2 seconds"
[rule.values]
r = 'ret("BTC/USD", "2s")'
"""


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(d: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """Just enough TOML writing for a config: scalars, lists, nested tables."""
    out = []
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if path and scalars:
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    out += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        out.append(to_toml(v, (*path, k)))
    return "\n".join(out) + "\n"


def price(i: int) -> float:
    # steady at 50,000 for 120 ticks (2.4 s), then down 1% per tick to -12%: each step is
    # confirmed by the next, so the engine's wild-print hold lets them through
    return 50_000.0 * (1 - 0.01 * min(max(i - 120, 0), 12))


async def start_bot(
    cfg: Path, rules: Path, url: str, extra_env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`stressbot run` in a subprocess on the Redis at `url`, no notifier credentials but
    those in `extra_env`."""
    env = {**os.environ, "REDIS_URL": url}
    for k in ("TELEGRAM_BOT_TOKEN", "DISCORD_WEBHOOK_URL", "STRESSBOT_TELEGRAM_TOKEN"):
        env.pop(k, None)
    env.update(extra_env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--config",
        str(cfg),
        "--rules",
        str(rules),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_stressbot_run_with_example_config_fires_a_rule_from_live_ticks(
    store: Store, tmp_path: Path
) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def frames(pair: str, cid: int, i: int) -> str | None:
        return kraken_ticker_frame(template, cid, pair, price(i)) if i < 140 else None

    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "live.toml").write_text(RULE)
    async with FakeKraken(rec, frames, Script(Behaviour(interval=0.02))) as fake:
        data["redis"]["prefix"] = store.prefix
        for name, src in data["feeds"]["sources"].items():
            src["enabled"] = name == "kraken"  # the others would need the internet
        data["feeds"]["backfill"]["days"] = 0  # so would the first-start history download
        data["feeds"]["sources"]["kraken"]["url"] = fake.url
        data["feeds"]["sources"]["kraken"]["stale_after"] = "30s"
        data.setdefault("engine", {})["max_lateness"] = "0s"
        data["engine"]["checkpoint_every"] = "0s"
        cfg = tmp_path / "config.toml"
        cfg.write_text(to_toml(data))
        proc = await start_bot(cfg, rules, REDIS_URL)
        try:

            async def fired() -> bool:
                return any(
                    a.rule == "btc_live_drop" and a.kind is AlertKind.FIRING
                    for _, a in await store.alerts()
                )

            try:
                await wait_until(fired, within=30.0, what="the rule to fire from live ticks")
            except AssertionError:
                proc.send_signal(signal.SIGTERM)
                out, _ = await asyncio.wait_for(proc.communicate(), 20.0)
                raise AssertionError(out.decode(errors="replace")[-4000:]) from None
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 20.0)
            except TimeoutError:
                proc.kill()
                out, _ = await proc.communicate()
    log = out.decode(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    ticks = await redis_ticks(store, "BTC/USD")
    assert len(ticks) >= 3 and {t.source for t in ticks} == {"kraken"}
    status = (await store.feed_statuses())["kraken"]
    assert status["state"] == "ok" and status["ticks"] >= 125
    # the example conflates to one tick per second: fewer in Redis than accepted, in order
    assert len(ticks) < status["ticks"]
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    alert = next(a for _, a in await store.alerts() if a.rule == "btc_live_drop")
    assert "BTC -" in alert.summary
