"""The Docker files agree with the code: the HEALTHCHECK asks the /healthz the bot serves (and
fails when nothing answers), compose waits for a healthy Redis with AOF on, mounts the config
where the image's command reads it, and gives a SIGTERM time for the notifier's grace period."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys

import pytest
import yaml

from bot.notify.config import DeliveryConfig
from bot.runtime.config import Config
from bot.runtime.metrics import MetricsServer
from bot.store.redis_store import Store
from tests.conftest import ROOT


def _healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    m = re.search(r"^HEALTHCHECK .*?\\\n\s+CMD (\[.*\])$", text, re.M)
    assert m, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    return list(json.loads(m.group(1)))


def _cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    m = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert m
    return list(json.loads(m.group(1)))


def test_the_healthcheck_asks_the_default_healthz() -> None:
    argv = _healthcheck()
    assert argv[:2] == ["python", "-c"]
    m = Config().metrics
    assert f"'http://{m.host}:{m.port}/healthz'" in argv[2]


async def test_the_healthcheck_command_passes_on_a_live_server_and_fails_without(
    store: Store,
) -> None:
    code = _healthcheck()[2]
    m = Config().metrics
    with socket.socket() as s:
        if s.connect_ex((m.host, m.port)) == 0:
            pytest.skip(f"{m.host}:{m.port} is in use here")

    async def check() -> int:
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stderr=asyncio.subprocess.DEVNULL
        )
        return await asyncio.wait_for(p.wait(), 30)

    assert await check() != 0  # nothing listens: unhealthy
    srv = MetricsServer(store, m.host, m.port)
    stop = asyncio.Event()
    task = asyncio.create_task(srv.run(stop))
    try:
        await asyncio.wait_for(srv.ready.wait(), 10)
        assert srv.bound_port == m.port
        assert await check() == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_compose_waits_for_redis_keeps_aof_and_mounts_the_config() -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    redis, bot = doc["services"]["redis"], doc["services"]["stressbot"]
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["env_file"][0]["path"] == ".env"
    config = _cmd()[_cmd().index("--config") + 1]
    assert f"./config.toml:{config}:ro" in bot["volumes"]
    grace = float(str(bot["stop_grace_period"]).removesuffix("s"))
    assert grace > DeliveryConfig().request_timeout + 2.0
