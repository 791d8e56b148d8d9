"""Issue 11, "beyond one Redis server": stressbot behind Redis Sentinel, through a failover.

A local master, one replica and a Sentinel (their own ports and temp dirs, killed at
teardown). `stressbot run` is pointed at them by ``REDIS_URL=redis+sentinel://...`` alone;
the master is killed (SIGKILL), the Sentinel promotes the replica, the bot reconnects (the
engine and the notifiers wait with backoff, the client asks the Sentinel for the new master
on its next connection), and the alerts raised before and after are each delivered once.

Replication is asynchronous: a write the master acknowledged may not have reached the
replica when it dies. :func:`test_acknowledged_commits_through_a_failover` measures that for
the engine commit with and without ``WAIT`` (``[redis] wait_replicas``): with WAIT every
commit the replica acknowledged survives the failover.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sys
import time
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from bot.core.errors import ConfigError, StoreUnavailable
from bot.core.models import Alert, AlertKind
from bot.store.connection import (
    RedisConfig,
    connect,
    parse_redis_url,
    redis_target,
)
from bot.store.redis_store import Checkpoint, Store
from tests.conftest import shared_path
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
from tests.notify_fixtures import TOKEN_ENV
from tests.redis_server import OwnSentinel, free_port
from tests.test_connector_live_run import start_bot, to_toml
from tests.test_live_redis_restart import kraken_only, stop_bot, tolerant

PREFIX = "sentinel"
RULES = """
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

[[rule]]
id = "btc_live_jump"
pattern = "crypto_crash"
severity = "warning"
when = 'ret("BTC/USD", "2s") > 5'
for = "0s"
cooldown = "1d"
summary = "BTC {r:+.1f}% in 2 seconds"
[rule.values]
r = 'ret("BTC/USD", "2s")'
"""


# ---- where Redis is: URLs and config keys (no server needed) -----------------------------


def test_sentinel_and_cluster_urls_are_parsed() -> None:
    t = parse_redis_url("redis+sentinel://u:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
    assert t.kind == "sentinel" and t.service == "mymaster" and t.db == 2
    assert t.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (t.username, t.password, t.tls) == ("u", "s3cret", False)
    assert parse_redis_url("rediss+sentinel://h:1/m").db == 0
    c = parse_redis_url("redis+cluster://h1:7000,h2:7001")
    assert c.kind == "cluster" and c.hosts == (("h1", 7000), ("h2", 7001))
    assert parse_redis_url("redis://h:6379/0").kind == "server"


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://u:s3cret@h:26379",  # no service
        "redis+sentinel://u:s3cret@h:26379/m/x",  # db not a number
        "redis+sentinel://u:s3cret@h/m",  # no port
        "redis+cluster://u:s3cret@h:7000/3",  # a cluster has db 0 only
        "memcached://u:s3cret@h:11211",
    ],
)
def test_a_bad_url_is_a_clear_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_redis_url(url)
    assert "s3cret" not in str(e.value) and "redis url" in str(e.value)


def test_config_keys_and_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    cfg = RedisConfig(sentinels=["10.0.0.1:26379", "10.0.0.2:26379"], service="mymaster")
    t = redis_target(cfg)
    assert t.kind == "sentinel" and t.service == "mymaster" and len(t.hosts) == 2
    c = redis_target(RedisConfig(url="redis://h:7000/0", cluster=True))
    assert c.kind == "cluster" and c.hosts == (("h", 7000),)
    with pytest.raises(ConfigError, match="wait_replicas"):
        redis_target(RedisConfig(url="redis+cluster://h:7000", wait_replicas=1))
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://e:26379/other/1")
    assert redis_target(cfg).service == "other"  # the environment wins, as for url
    with pytest.raises(ValueError, match="service"):
        RedisConfig(sentinels=["h:26379"])
    with pytest.raises(ValueError, match="not both"):
        RedisConfig(url="redis://h:1/0", sentinels=["h:26379"], service="m")


@pytest.mark.parametrize("scheme", ["redis+sentinel", "redis+cluster"])
async def test_nothing_there_is_a_clear_error_without_the_password(scheme: str) -> None:
    url = f"{scheme}://u:s3cret@127.0.0.1:{free_port()}" + ("/m/0" if "sentinel" in scheme else "")
    with pytest.raises(StoreUnavailable) as e:
        await connect(url)
    text = str(e.value)
    assert "s3cret" not in text and "u:***@" in text and "cannot reach Redis" in text
    if "sentinel" in scheme:  # which comes first depends on redis-py's connect retries
        assert "no Sentinel there named a master for 'm'" in text or "no answer within" in text
    else:
        assert "Redis Cluster cannot be connected" in text


# ---- a failover under the engine's commits ------------------------------------------------


@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1"])
async def test_acknowledged_commits_through_a_failover(tmp_path: Path, wait: int) -> None:
    """Fenced commits (checkpoint + one alert each) as fast as they go; the master is killed
    in the middle. Afterwards, on the promoted replica: which acknowledged commits are there?
    With ``wait_replicas = 1`` every commit whose WAIT counted the replica must be; without,
    the figure is measured and printed (loopback replication is quick, so usually 0 lost,
    but nothing guarantees it)."""
    async with OwnSentinel(tmp_path) as sentinel:
        conn = await connect(sentinel.url)
        try:
            store = Store(conn.redis, prefix=PREFIX)
            store.wait_replicas, store.wait_timeout = wait, 1.0
            fence, _ = await store.acquire_engine_lease("test/1/a", 600.0)
            assert fence is not None
            durable: list[str] = []  # acknowledged (and with WAIT: by the replica)
            acked: list[str] = []

            async def commits() -> None:
                for i in range(1, 100_000):
                    a = Alert(
                        id=f"a@{i}",
                        ts=float(i),
                        rule="a",
                        pattern="custom",
                        severity="info",
                        summary="s",
                    )
                    try:
                        await store.commit(
                            Checkpoint(f"{i}-0", "f", float(i), b"{}"), [a], fence=fence
                        )
                    except (RedisError, OSError):
                        return
                    acked.append(a.id)
                    if not wait or (store.last_wait or 0) >= wait:
                        durable.append(a.id)

            task = asyncio.create_task(commits())
            await wait_until(lambda: _at_least(acked, 200), within=30, what="commits")
            t_kill = time.monotonic()
            await sentinel.fail_over()
            promoted_after = time.monotonic() - t_kill
            await asyncio.wait_for(task, 30)
            survivors: set[str] = set()

            async def read() -> bool:
                survivors.update(a.id for _, a in await store.alerts())
                return True

            await wait_until(tolerant(read), within=30, what="the promoted master")
            lost = [i for i in durable if i not in survivors]
            cp = await store.load_checkpoint()
            assert cp is not None
            # the checkpoint and the outbox travel together: the checkpoint names the last
            # commit that survived, and no alert of a later commit is there
            last = int(cp.position.split("-")[0])
            assert survivors == {f"a@{i}" for i in range(1, last + 1)}
        finally:
            await conn.close()
    print(
        f"sentinel failover, wait_replicas={wait}: {len(acked)} commits acknowledged, "
        f"{len(lost)} of {len(durable)} durable ones lost, promoted in {promoted_after:.1f} s"
    )
    if wait:
        assert durable and lost == [], lost


@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1"])
async def test_commits_the_replica_never_got_are_lost_on_failover(
    tmp_path: Path, wait: int
) -> None:
    """The replication link stalls (the replica gets nothing more), K commits are
    acknowledged by the master, the master dies and the stale replica is promoted: those K
    are gone, checkpoint and alerts together (the engine resumes from the older checkpoint
    and raises their alerts again from the ticks, if the ticks survived). Without WAIT the
    engine never knows; with ``wait_replicas = 1`` each of them reported 0 replicas (logged)
    and cost `wait_timeout`, and no commit that WAIT confirmed is lost."""
    k = 5
    async with OwnSentinel(tmp_path, link=True) as sentinel:
        assert sentinel.link is not None
        conn = await connect(sentinel.url)
        try:
            store = Store(conn.redis, prefix=PREFIX)
            store.wait_replicas, store.wait_timeout = wait, 0.2
            fence, _ = await store.acquire_engine_lease("test/1/a", 600.0)
            assert fence is not None

            async def commit(i: int) -> bool:
                a = Alert(
                    id=f"a@{i}",
                    ts=float(i),
                    rule="a",
                    pattern="custom",
                    severity="info",
                    summary="s",
                )
                await store.commit(Checkpoint(f"{i}-0", "f", float(i), b"{}"), [a], fence=fence)
                return not wait or (store.last_wait or 0) >= wait

            assert await commit(1)  # before the stall: replicated (WAIT says so)
            if not wait:
                await sentinel.wait_synced()
                await asyncio.sleep(0.5)
            sentinel.link.hold()
            confirmed = [await commit(i) for i in range(2, 2 + k)]
            await sentinel.master.kill()
            await sentinel.link.cut()
            await sentinel.fail_over()
            ids: list[str] = []

            async def read() -> bool:
                ids[:] = [a.id for _, a in await store.alerts()]
                return True

            await wait_until(tolerant(read), within=30, what="the promoted master")
            cp = await store.load_checkpoint()
        finally:
            await conn.close()
    assert ids == ["a@1"] and cp is not None and cp.position == "1-0"  # k commits lost
    if wait:
        assert confirmed == [False] * k  # each was reported unconfirmed
    else:
        assert confirmed == [True] * k  # the engine took each as done
    print(
        f"stalled replica, wait_replicas={wait}: {k} acknowledged commits lost, "
        f"{confirmed.count(False)} of them reported by WAIT"
    )


async def _at_least(xs: list[str], n: int) -> bool:
    return len(xs) >= n


# ---- stressbot run through a failover ------------------------------------------------------


def write_config(tmp_path: Path, kraken_url: str, tg: FakeTelegram) -> tuple[Path, Path]:
    data = kraken_only(kraken_url)
    data["redis"] = {"prefix": PREFIX, "wait_replicas": 1, "wait_timeout": 1.0}
    telegram = data["notify"]["telegram"]
    telegram.update(
        token_env=TOKEN_ENV,
        api_base=tg.base,
        min_interval=0,
        global_min_interval=0,
        group_min_interval=0,
    )
    telegram.pop("chats", None)
    data["notify"]["delivery"].update(backoff_base=0.05, backoff_max=0.5)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "live.toml").write_text(RULES)
    cfg = tmp_path / "config.toml"
    chat = '\n[[notify.telegram.chats]]\nname = "desk"\nchat_id = -1001\ncharts = false\n'
    cfg.write_text(to_toml(data) + chat)
    return cfg, rules


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_stressbot_run_rides_out_a_sentinel_failover(tmp_path: Path) -> None:
    rec = read_recording(shared_path("fixtures", "cryptofeed", "KRAKEN.ws.49.0"))
    template = kraken_ticker_template(rec)
    price = {"level": 50_000.0, "target": 50_000.0}

    def frames(pair: str, cid: int, i: int) -> str:
        lv, tg = price["level"], price["target"]
        if lv != tg:  # 1 % a frame towards the target
            step = lv * 0.01
            price["level"] = max(tg, lv - step) if tg < lv else min(tg, lv + step)
        return kraken_ticker_frame(template, cid, pair, price["level"])

    (tmp_path / "redis").mkdir()
    tg = await FakeTelegram().start()
    async with (
        OwnSentinel(tmp_path / "redis") as sentinel,
        FakeKraken(rec, frames, Script(Behaviour(interval=0.02))) as fake,
    ):
        cfg, rules = write_config(tmp_path, fake.url, tg)
        conn = await connect(sentinel.url)
        store = Store(conn.redis, prefix=PREFIX)
        proc = await start_bot(cfg, rules, sentinel.url, {TOKEN_ENV: tg.token})
        try:
            await wait_until(tolerant(store.load_checkpoint), within=60, what="a checkpoint")
            price["target"] = 50_000.0 * 0.88  # a drop: btc_live_drop fires
            await wait_until(lambda: _delivered(tg, 1), within=60, what="the first alert")
            await asyncio.sleep(1.0)  # replication catches up; no write in flight matters
            t_kill = time.monotonic()
            await sentinel.fail_over()
            promoted = time.monotonic() - t_kill
            assert proc.returncode is None, "stressbot run exited on the failover"
            await wait_until(
                tolerant(lambda: _ticks_after(store, t_kill)), within=60, what="new ticks"
            )
            price["target"] = price["level"] * 1.12  # a jump: btc_live_jump fires
            await wait_until(lambda: _delivered(tg, 2), within=60, what="the second alert")
            recovered = time.monotonic() - t_kill
            await asyncio.sleep(3.0)  # time for a duplicate to show up, if one would
            firing = [a.id for _, a in await store.alerts() if a.kind is AlertKind.FIRING]
            sent = _sent_ids(tg)
        finally:
            rc, log = await stop_bot(proc)
            await conn.close()
            await tg.stop()
    assert rc == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert "store unavailable" in log, log[-4000:]  # it did wait the failover out
    rules_fired = sorted(i.split("@")[0] for i in firing)
    assert rules_fired == ["btc_live_drop", "btc_live_jump"], firing  # once each in the outbox
    assert sent == collections.Counter(firing), sent  # delivered once each
    print(
        f"sentinel failover under stressbot run: replica promoted in {promoted:.1f} s, "
        f"the next alert delivered {recovered:.1f} s after the kill; 2 alerts, 2 deliveries"
    )


def _sent_ids(tg: FakeTelegram) -> collections.Counter[str]:
    return collections.Counter(
        m.group(1) for s in tg.sent if (m := re.search(r"id: (\S+)", s.visible))
    )


async def _delivered(tg: FakeTelegram, n: int) -> bool:
    return sum(_sent_ids(tg).values()) >= n


async def _ticks_after(store: Store, t: float) -> bool:
    newest = await store.read_ticks("0-0", count=1)  # any tick at all answers from the master
    if not newest:
        return False
    last = await store.redis.xrevrange(store.k_ticks, "+", "-", count=1)
    ms = int((last[0][0].decode() if isinstance(last[0][0], bytes) else last[0][0]).split("-")[0])
    return ms / 1000 > time.time() - (time.monotonic() - t) + 0.5
