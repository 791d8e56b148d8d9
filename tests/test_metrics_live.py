"""Must-show (issue 12): `/metrics` scraped during a live `stressbot run` shows the counters
moving, and `/readyz` flips when Redis goes away and when leadership moves.

Real `stressbot run` subprocesses; a fake Kraken (tests/fake_feeds.py) and a fake Telegram
(tests/fake_telegram.py) on loopback; a redis-server of the test's own where the test kills
it (tests/redis_server.py), the shared Redis otherwise.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.cli.status import build_status
from bot.runtime.config import load_config
from bot.runtime.snapshot import read_snapshot
from bot.store.redis_store import Store
from tests.conftest import REDIS_URL, ROOT, shared_path
from tests.fake_feeds import (
    Behaviour,
    FakeKraken,
    Script,
    kraken_ticker_frame,
    kraken_ticker_template,
    read_recording,
    wait_until,
)
from tests.fake_telegram import FakeTelegram
from tests.notify_fixtures import TOKEN_ENV, telegram_fixture, tg_ids
from tests.redis_server import OwnRedis, free_port
from tests.test_connector_live_run import RULE, price, start_bot, to_toml
from tests.test_live_redis_restart import stop_bot

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals")

tg = telegram_fixture()
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def write_config(
    tmp_path: Path, prefix: str, port: int, *, kraken: str | None, tg: FakeTelegram | None
) -> tuple[Path, Path]:
    """The example config with only Kraken (at the fake) or no feed, metrics on `port` and
    one Telegram chat at the fake."""
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    data["redis"]["prefix"] = prefix
    for name, src in data["feeds"]["sources"].items():
        src["enabled"] = name == "kraken" and kraken is not None
    if kraken is not None:
        data["feeds"]["sources"]["kraken"]["url"] = kraken
        data["feeds"]["sources"]["kraken"]["stale_after"] = "30s"
    data["feeds"]["backfill"]["days"] = 0
    data.setdefault("engine", {})["max_lateness"] = "0s"
    data["engine"]["checkpoint_every"] = "0s"
    data["metrics"].update(port=port, host="127.0.0.1")
    data.pop("notify", None)
    text = to_toml(data)
    if tg is not None:
        text += (
            f'[notify.telegram]\ntoken_env = "{TOKEN_ENV}"\napi_base = "{tg.base}"\n'
            "min_interval = 0\ngroup_min_interval = 0\nglobal_min_interval = 0\n"
            'poll_timeout = "1s"\n[[notify.telegram.chats]]\nname = "desk"\n'
            "chat_id = -1001\ncharts = false\n"
            "[notify.delivery]\nbackoff_base = 0.01\nbackoff_max = 0.05\n"
        )
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "live.toml").write_text(RULE)
    cfg = tmp_path / f"config-{port}.toml"
    cfg.write_text(text)
    return cfg, rules


async def get(port: int, path: str) -> tuple[int, str]:
    await asyncio.sleep(0.1)  # polled in wait_until loops: no need to hammer the server
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            return r.status, await r.text()
    except (aiohttp.ClientError, TimeoutError) as e:
        return 0, f"{type(e).__name__}: {e}"


async def scrape(port: int) -> Samples:
    status, text = await get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(m: Samples, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@asynccontextmanager
async def running(cfg: Path, rules: Path, url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await start_bot(cfg, rules, url)
    try:
        yield proc
    except BaseException:
        _, log = await stop_bot(proc)
        print(log[-4000:])
        raise
    code, log = await stop_bot(proc)
    assert code == 0, log[-3000:]


async def test_metrics_move_during_a_live_run_and_readyz_flips_when_redis_goes(
    tmp_path: Path, tg: FakeTelegram
) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)

    def frames(pair: str, cid: int, i: int) -> str | None:
        return kraken_ticker_frame(template, cid, pair, price(i)) if i < 3000 else None

    port = free_port()
    async with (
        OwnRedis(tmp_path) as redis_server,
        FakeKraken(rec, frames, Script(Behaviour(interval=0.02))) as fake,
    ):
        cfg, rules = write_config(tmp_path, "live", port, kraken=fake.url, tg=tg)
        async with running(cfg, rules, redis_server.url):

            async def ticking() -> bool:
                m = await scrape(port) if (await get(port, "/healthz"))[0] == 200 else {}
                return value(m, "stressbot_feed_ticks_total", feed="kraken") > 0

            await wait_until(ticking, within=40.0, what="ticks counted in /metrics")
            before = await scrape(port)
            await wait_until(
                lambda: bool(tg_ids(tg)), within=30.0, what="the alert at the fake Telegram"
            )

            async def delivered() -> bool:
                m = await scrape(port)
                return value(m, "stressbot_deliveries_total", destination="desk") >= 1

            await wait_until(delivered, within=10.0, what="the delivery counted")
            after = await scrape(port)
            for name, labels in [
                ("stressbot_feed_ticks_total", {"feed": "kraken"}),
                ("stressbot_feed_messages_total", {"feed": "kraken"}),
                ("stressbot_feed_symbol_ticks_total", {"feed": "kraken", "symbol": "BTC/USD"}),
                ("stressbot_engine_evaluations_total", {}),
                ("stressbot_alerts_total", {"rule": "btc_live_drop", "kind": "firing"}),
                ("stressbot_deliveries_total", {"destination": "desk"}),
                ("stressbot_delivery_messages_total", {"destination": "desk"}),
            ]:
                assert value(after, name, **labels) > value(before, name, **labels), (
                    name,
                    labels,
                )
            assert value(after, "stressbot_engine_role", role="leader") == 1
            assert value(after, "stressbot_feed_state", feed="kraken", state="ok") == 1
            assert value(after, "stressbot_redis_up") == 1
            assert value(after, "stressbot_parked_alerts", destination="desk") == 0
            assert value(after, "stressbot_outbox_length") >= 1
            assert ("stressbot_engine_lag_seconds", ()) in after
            assert ("stressbot_engine_backlog_seconds", ()) in after
            assert await get(port, "/readyz") == (200, "ready (leader)\n")
            await status_of_the_live_run(cfg, redis_server.url)

            await redis_server.kill()

            async def not_ready() -> bool:
                status, body = await get(port, "/readyz")
                return status == 503 and "Redis unavailable" in body

            await wait_until(not_ready, within=10.0, what="/readyz 503 without Redis")
            assert (await get(port, "/healthz"))[0] == 200  # alive all the same
            assert value(await scrape(port), "stressbot_redis_up") == 0

            await redis_server.start()

            async def ready_again() -> bool:
                return (await get(port, "/readyz"))[0] == 200

            await wait_until(ready_again, within=30.0, what="/readyz 200 with Redis back")


async def status_of_the_live_run(cfg: Path, url: str) -> None:
    """`stressbot status` (its document) on the same deployment says what the metrics say."""
    config = load_config(cfg)
    client = Redis.from_url(url)
    try:
        snap = await read_snapshot(Store(client, prefix="live"), destinations=["desk"])
    finally:
        await client.aclose()
    doc = build_status(config, snap)
    rule = next(r for r in doc["rules"] if r["rule"] == "btc_live_drop")
    assert rule["last_fired"] is not None and rule["last_fired"].endswith("Z")
    (btc,) = [s for s in doc["symbols"] if s["symbol"] == "BTC/USD"]
    assert btc["serving"] == ["kraken"]
    assert doc["engine"]["leader"] is not None and doc["engine"]["state"] == "live"
    (desk,) = doc["outbox"]["destinations"]
    assert desk["destination"] == "desk" and desk["parked"] == 0 and desk["unacked"] == 0


async def test_readyz_follows_leadership_between_two_instances(
    store: Store, tmp_path: Path
) -> None:
    pa, pb = free_port(), free_port()
    cfg_a, rules = write_config(tmp_path, store.prefix, pa, kraken=None, tg=None)
    cfg_b, _ = write_config(tmp_path, store.prefix, pb, kraken=None, tg=None)

    def says(port: int, body: str) -> Any:
        async def check() -> bool:
            return await get(port, "/readyz") == (200 if body.startswith("ready") else 503, body)

        return check

    async with running(cfg_a, rules, REDIS_URL) as a:
        await wait_until(says(pa, "ready (leader)\n"), within=40.0, what="A leads")
        async with running(cfg_b, rules, REDIS_URL):
            await wait_until(says(pb, "ready (standby)\n"), within=40.0, what="B stands by")
            mb = await scrape(pb)
            assert value(mb, "stressbot_engine_role", role="standby") == 1
            assert value(mb, "stressbot_engine_standby") == 1
            a.send_signal(signal.SIGSTOP)  # A stops renewing: its lease lapses, B takes over
            try:
                await wait_until(says(pb, "ready (leader)\n"), within=30.0, what="B leads")
            finally:
                a.send_signal(signal.SIGCONT)
            # A wakes up past its lease: its renewal is refused and it stands by behind B
            await wait_until(says(pa, "ready (standby)\n"), within=30.0, what="A stands by")
            ma = await scrape(pa)
            assert value(ma, "stressbot_engine_role", role="standby") == 1
            assert value(ma, "stressbot_engine_role", role="leader") == 0
