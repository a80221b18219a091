"""The loopback Graph API fake (``tests/support/graph_api_fake.py``) in a process of its own.

In the benchmark's process (a thread with its own loop) the fake shared that process's CPU with
the load generator and the benchmark's bookkeeping, and its figure could not be told apart; here
it runs on uvloop in a child process whose CPU ``proc_cpu`` reads on its own. The benchmark asks
it, over a pipe, for its channel fields, to wait until it holds so many requests, and for the
log of what it received (the monotonic clock is the machine's, so its times compare with the
load generator's).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

Template = tuple[str, str, str, list[dict[str, Any]]]  # name, language, category, components
Logged = tuple[float, str | None, int]  # when (monotonic), recipient, status answered


def _serve(conn: Connection, validate: bool, templates: list[Template]) -> None:
    from tests.support.graph_api_fake import GraphApiFake

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        fake = await GraphApiFake(validate=validate).start()
        for name, language, category, components in templates:
            fake.add_template(name, language, category, components)
        reached = asyncio.Event()
        target = 0

        def on_request(_: Any) -> None:
            if len(fake.requests) >= target:
                reached.set()

        fake.on_request = on_request
        conn.send(fake.channel_fields())
        while True:
            command, argument = await loop.run_in_executor(None, conn.recv)
            if command == "wait":  # argument: (requests, timeout seconds)
                target, timeout = argument
                reached.clear()
                if len(fake.requests) < target:
                    try:
                        async with asyncio.timeout(timeout):
                            await reached.wait()
                    except TimeoutError:
                        pass
                conn.send(len(fake.requests))
            elif command == "log":  # argument: the first request to report
                conn.send(
                    [
                        (r.at, (r.body or {}).get("to") if isinstance(r.body, dict) else None, r.status)
                        for r in fake.requests[argument:]
                    ]
                )
            elif command == "rejected":
                conn.send([f"{r.status} {r.error}" for r in fake.rejected()])
            else:
                break
        await fake.stop()

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - plain asyncio works too
        runner = asyncio.Runner()
    with runner:
        runner.run(serve())


class GraphFakeProcess:
    """``with GraphFakeProcess() as fake:`` point a channel at ``fake.channel_fields()``.

    ``validate``: check every request against Meta's OpenAPI description (costs the fake's CPU,
    not the server's). ``templates``: approved templates the fake knows from the start.
    """

    def __init__(self, validate: bool = False, templates: list[Template] | None = None) -> None:
        self._validate = validate
        self._templates = templates or []
        self._conn: Connection | None = None
        self._process: Any = None
        self._fields: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.pid is not None
        return int(self._process.pid)

    def channel_fields(self) -> dict[str, Any]:
        """What ``server.store.channels.new_channel`` needs to send through the fake."""
        return dict(self._fields)

    @property
    def phone_number_id(self) -> str:
        return str(self._fields["phone_number_id"])

    def __enter__(self) -> GraphFakeProcess:
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._process = spawn.Process(
            target=_serve, args=(child, self._validate, self._templates), name="graph-api-fake", daemon=True
        )
        self._process.start()
        child.close()
        self._fields = self._conn.recv()
        return self

    async def _ask(self, command: str, argument: Any = None) -> Any:
        conn = self._conn
        assert conn is not None, "the fake is not started"
        async with self._lock:  # one question at a time on the pipe
            conn.send((command, argument))
            return await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    async def wait_requests(self, count: int, timeout: float) -> int:
        """Until the fake has received ``count`` requests in all (or ``timeout``); how many it has."""
        return int(await self._ask("wait", (count, timeout)))

    async def received(self) -> int:
        return await self.wait_requests(0, 0)

    async def log(self, since: int = 0) -> list[Logged]:
        """(monotonic time, recipient, status) of each request from the ``since``-th on."""
        return [tuple(entry) for entry in await self._ask("log", since)]  # type: ignore[misc]

    async def rejected(self) -> list[str]:
        """Requests the fake refused as off-spec (not the faults a test queued)."""
        return list(await self._ask("rejected"))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            try:
                conn.send(("stop", None))
            except OSError:
                pass
            conn.close()
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
