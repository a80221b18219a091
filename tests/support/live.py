"""A real uvicorn server in the test's event loop, on a free loopback port, for WebSocket tests.

The runtime is the test's own (already started), so the test can look inside while a client
talks to the server over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from server.dev.embedded import free_port
from server.runtime import Runtime
from server.web.app import create_app


@contextlib.asynccontextmanager
async def live_server(runtime: Runtime) -> AsyncIterator[tuple[str, Starlette]]:
    """Yield (base URL, app) while uvicorn serves ``create_app`` for ``runtime``."""
    app = create_app(runtime.settings, runtime=runtime)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws_ping_interval=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
