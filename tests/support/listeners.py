"""Loopback listeners an attacker would aim the server at, counting every connection they get.

``http``: a minimal HTTP/1.1 server answering from a handler (status, headers, body) -- an
internal service, a redirecting server, a Graph-like page with ``paging.next``. ``silent``:
accepts and closes. ``banner``: speaks another protocol (an SSH greeting). ``hang``: accepts and
never answers. ``closed``: a port nothing listens on. A test asserts ``connections == 0`` to show
the server never even connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Behaviour = Literal["http", "silent", "banner", "hang", "closed"]
Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, str, dict[str, str]], Answer]


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Listener:
    behaviour: Behaviour = "http"
    handler: Handler | None = None
    host: str = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None  # https: the server side's certificate
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> Listener:
        if self.behaviour == "closed":
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                self.port = sock.getsockname()[1]  # free now: nothing listens on it
            return self
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def url(self, host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.behaviour == "banner":
                writer.write(b"SSH-2.0-OpenSSH_9.6 internal-banner\r\n")
                await writer.drain()
            elif self.behaviour == "hang":
                await asyncio.Event().wait()  # a peer that never answers (until torn down)
            elif self.behaviour == "http":
                await self._serve_http(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        length = int(headers.get("content-length") or 0)
        if length:
            await reader.readexactly(length)
        self.requests.append(Received(method, path, headers))
        status, extra, body = (self.handler or (lambda *_: (204, {}, b"")))(method, path, headers)
        out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        out += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)
        await writer.drain()
