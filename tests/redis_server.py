"""A throwaway redis-server of the test's own, on a free loopback port, that a test may kill
and restart (the shared Redis at REDIS_URL is never restarted)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """``redis-server --port N`` in `workdir`; `persist` keeps an AOF (fsync always) there."""

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs the redis-server binary")
        self.workdir = workdir
        self.persist = persist
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, within: float = 20.0) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.workdir)]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server",
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + within
        client = Redis.from_url(self.url, socket_connect_timeout=1.0)
        try:
            while True:
                try:
                    if await client.ping():
                        return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: no shutdown save, clients see their connections reset."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def __aenter__(self) -> OwnRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
