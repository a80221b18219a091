"""The Starlette application: /graphql, /healthz, /metrics, with the runtime as its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from server.config import Settings
from server.graphql.view import KonvoGraphQL
from server.runtime import Runtime


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    runtime = runtime or Runtime(settings)
    graphql = KonvoGraphQL(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    async def healthz(request: Request) -> JSONResponse:
        report = await runtime.health()
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    async def metrics(request: Request) -> PlainTextResponse:
        active = runtime.actors.active_count if runtime.actors else 0
        lines = [
            "# HELP konvo_active_actors Contact actors in memory.",
            "# TYPE konvo_active_actors gauge",
            f"konvo_active_actors {active}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
