"""A loopback TCP proxy that injects network faults between a notifier and a fake server.

It relays bytes both ways, so HTTP keep-alive, multipart bodies and both fakes work unchanged.

- ``down()``: the listening socket is closed and every open connection cut: new connections
  are refused (a destination that is unreachable: known not to have received anything).
  ``up()`` listens again on the same port.
- ``drop_next_answers(n)``: the next `n` answers from the server are not relayed; the client's
  connection is closed instead. The server has processed the request (accepted the message),
  so for the client the outcome is unknown: a lost acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop = 0
        self.dropped = 0
        self.refused_while_down = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        await self.up()
        return self

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._client, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    def drop_next_answers(self, n: int = 1) -> None:
        self._drop += n

    async def stop(self) -> None:
        await self.down()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while data := await src.read(65536):
                    if answers and self._drop > 0:
                        self._drop -= 1
                        self.dropped += 1
                        writer.transport.abort()
                        up_w.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_w, answers=False)),
            asyncio.create_task(pipe(up_r, writer, answers=True)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._conns.discard(writer)
            self._conns.discard(up_w)
