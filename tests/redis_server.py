"""Throwaway Redis servers of the test's own, on free loopback ports, that a test may kill and
restart (the shared Redis at REDIS_URL is never restarted): one server (:class:`OwnRedis`), a
master with a replica watched by Sentinels (:class:`OwnSentinel`), a 3-node Redis Cluster
(:class:`OwnCluster`). Each is an async context manager that kills every process it started
on exit, failures included; each skips the test when redis-server is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
from redis.asyncio import Redis


def need_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"needs the {name} binary (apt-get install redis-server)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Started:
    """Started on entering an ``async with`` block, stopped on leaving it (and after a
    start that failed half-way)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class OwnRedis(_Started):
    """``redis-server --port N`` in `workdir`; `persist` keeps an AOF (fsync always) there."""

    def __init__(self, workdir: Path, *, persist: bool = False, extra: Sequence[str] = ()) -> None:
        need_binary("redis-server")
        self.workdir = workdir
        self.persist = persist
        self.extra = list(extra)
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
        args += self.extra
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
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"redis-server {' '.join(args)} exited with {self.proc.returncode}"
                    )
                try:
                    if await client.ping():
                        return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def pause(self) -> None:
        """SIGSTOP: the server answers nothing and its connections stay open (a frozen host,
        or one cut off without a reset); SIGKILL still ends it."""
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: no shutdown save, clients see their connections reset."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        await self.kill()


async def _poll(what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(Exception):
            if await check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.05)


def _s(x: object) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class ReplicationLink:
    """A loopback relay in front of a master: the address the Sentinels (and so every
    client, and the replica) know it by. ``hold()`` stops relaying what the master sends on
    the replication connection (the one that sent PSYNC): the replica falls behind while
    clients are served as usual. ``cut()`` drops every connection and what was held: a link
    that failed with writes in flight, which on loopback a plain SIGKILL of the master never
    produces (the kernel still delivers what the dead master had written to its socket).
    (A relay in front of the replica only would not do: a Sentinel re-points a replica
    whose master address is not the master's, "+fix-slave-config".)"""

    def __init__(self, master_port: int) -> None:
        self.master_port = master_port
        self.port = 0
        self.held = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def hold(self) -> None:
        self.held.set()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.master_port)
        except OSError:
            w.transport.abort()
            return
        self._writers |= {w, uw}
        replication = asyncio.Event()
        for t in (self._pipe(r, uw, replication, False), self._pipe(ur, w, replication, True)):
            task = asyncio.create_task(t)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        r: asyncio.StreamReader,
        w: asyncio.StreamWriter,
        replication: asyncio.Event,
        down: bool,
    ) -> None:
        with contextlib.suppress(Exception):
            while data := await r.read(65536):
                if not down and b"PSYNC" in data.upper():
                    replication.set()
                if down and replication.is_set() and self.held.is_set():
                    continue  # master -> replica while held: never delivered
                w.write(data)
                await w.drain()
        w.transport.abort()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class OwnSentinel(_Started):
    """A master, one replica and `n` Sentinels (quorum: a majority) on loopback ports, in
    temp dirs under `workdir`; the service name is `service`. Sentinels declare the master
    down after `down_after` ms of silence, so a killed master is replaced in a second or two.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        n: int = 1,
        service: str = "stressbot-test",
        down_after: int = 500,
        link: bool = False,
    ) -> None:
        need_binary("redis-server")
        self.workdir, self.service, self.n, self.down_after = workdir, service, n, down_after
        (workdir / "master").mkdir()
        (workdir / "replica").mkdir()
        self.master = OwnRedis(workdir / "master")
        #: with `link`, the replica replicates through a relay the test can hold and cut
        self.link = ReplicationLink(self.master.port) if link else None
        self.replica = OwnRedis(workdir / "replica")
        self.sentinel_ports = [free_port() for _ in range(n)]
        self.sentinels: list[asyncio.subprocess.Process] = []

    @property
    def master_port(self) -> int:
        """The port the master is known by (its relay's, with `link`)."""
        return self.link.port if self.link is not None else self.master.port

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def _sentinel_conf(self, i: int, port: int) -> Path:
        d = self.workdir / f"sentinel{i}"
        d.mkdir()
        conf = d / "sentinel.conf"  # Sentinel rewrites its config file: one each, writable
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {d}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} {self.n // 2 + 1}\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after}\n"
            f"sentinel failover-timeout {self.service} 3000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        return conf

    async def start(self) -> None:
        await self.master.start()
        if self.link is not None:
            await self.link.start()
        self.replica.extra += ["--replicaof", "127.0.0.1", str(self.master_port)]
        await self.replica.start()
        for i, port in enumerate(self.sentinel_ports):
            conf = self._sentinel_conf(i, port)
            self.sentinels.append(
                await asyncio.create_subprocess_exec(
                    "redis-server",
                    str(conf),
                    "--sentinel",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        await self.wait_synced()
        await _poll("sentinels see the replica and each other", self._sentinels_ready, 20.0)

    async def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            async with Redis(port=port, socket_connect_timeout=1.0) as s:
                replicas: Any = await s.execute_command("SENTINEL", "REPLICAS", self.service)
                others: Any = await s.execute_command("SENTINEL", "SENTINELS", self.service)
                if not replicas or len(others) < self.n - 1:
                    return False
        return True

    async def wait_synced(self, within: float = 20.0) -> None:
        """Until the replica reports its link to the master up."""

        async def synced() -> bool:
            async with Redis(port=self.replica.port, socket_connect_timeout=1.0) as r:
                info: Any = await r.info("replication")
                return bool(info.get("master_link_status") == "up")

        await _poll("replica in sync", synced, within)

    async def master_address(self) -> tuple[str, int]:
        async with Redis(port=self.sentinel_ports[0], socket_connect_timeout=1.0) as s:
            addr: Any = await s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            return _s(addr[0]), int(addr[1])

    async def fail_over(self, within: float = 30.0) -> tuple[str, int]:
        """Kill the master (SIGKILL) and wait until the Sentinels name the replica master and
        it accepts writes. Returns the new master's address."""
        await self.master.kill()

        async def promoted() -> bool:
            if (await self.master_address())[1] != self.replica.port:
                return False
            async with Redis(port=self.replica.port, socket_connect_timeout=1.0) as r:
                info: Any = await r.info("replication")
                return bool(info.get("role") == "master")

        await _poll("the replica promoted", promoted, within)
        return "127.0.0.1", self.replica.port

    async def stop(self) -> None:
        for p in self.sentinels:
            if p.returncode is None:
                p.kill()
                await p.wait()
        self.sentinels.clear()
        if self.link is not None:
            await self.link.cut()
        await self.replica.kill()
        await self.master.kill()


class OwnCluster(_Started):
    """A Redis Cluster of `n` masters with `replicas` replicas each (``redis-cli --cluster
    create ... --cluster-replicas R``), each node in its own dir under `workdir`."""

    def __init__(self, workdir: Path, n: int = 3, replicas: int = 0) -> None:
        need_binary("redis-server")
        need_binary("redis-cli")
        self.replicas = replicas
        self.nodes = []
        for i in range(n * (1 + replicas)):
            d = workdir / f"node{i}"
            d.mkdir()
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf")]
            # the bus port defaults to port + 10000, too high for most free ports
            extra += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]
            self.nodes.append(OwnRedis(d, extra=extra))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
        create = await asyncio.create_subprocess_exec(
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(create.communicate(), 60.0)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.decode()[-2000:]}")

        async def ok() -> bool:
            for node in self.nodes:
                async with Redis(port=node.port, socket_connect_timeout=1.0) as r:
                    info = _s(await r.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" not in info:
                        return False
            return True

        await _poll("cluster_state:ok on every node", ok, 30.0)
        if self.replicas:
            await _poll("every replica in sync", self._replicas_synced, 30.0)

    async def _replicas_synced(self) -> bool:
        synced = 0
        for node in self.nodes:
            async with Redis(port=node.port, socket_connect_timeout=1.0) as r:
                info: Any = await r.info("replication")
                synced += info.get("master_link_status") == "up"
        return synced == len(self.nodes) // (1 + self.replicas) * self.replicas

    async def owner_of(self, key: str) -> OwnRedis:
        """The master node serving `key`'s slot now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.proc is None:
                continue
            async with Redis(port=node.port, socket_connect_timeout=1.0) as r:
                shards: Any = await r.execute_command("CLUSTER", "SLOTS")
                for start, end, master, *_ in shards:
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    async def stop(self) -> None:
        for node in self.nodes:
            await node.kill()
