"""A loopback TCP relay a test can cut and heal: a network partition between one client and a server.

Bytes are relayed both ways while the gate is open. ``cut()`` stops relaying without closing
anything (like packets dropped on the wire: the client's requests get no answer, connections
stay up, nothing errors until the client's own timeout); ``heal()`` relays again, the held
bytes first. Only the clients pointed at the gate are cut off; the server itself keeps serving
everyone else (unlike ``CLIENT PAUSE``, which would stall every test sharing the server).
"""

from __future__ import annotations

import asyncio
import contextlib

from server.cancellation import cancel_all_and_wait


class TcpGate:
    """Relays ``127.0.0.1:<port>`` to ``target_host:target_port`` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> TcpGate:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await cancel_all_and_wait(list(self._pumps))
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self._writers += [client_writer, server_writer]
        for reader, writer in ((client_reader, server_writer), (server_reader, client_writer)):
            pump = asyncio.create_task(self._pump(reader, writer))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                await self._open.wait()
                writer.write(chunk)
                await writer.drain()
        writer.close()
