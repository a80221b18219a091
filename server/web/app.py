"""The Starlette application: /graphql (+ GraphiQL assets), /operator/graphql (when
``KONVO_OPERATOR_KEY`` is set), /healthz, /metrics, with the runtime as
its lifespan; every HTTP body is size-capped (``KONVO_MAX_BODY_BYTES``). ``/metrics`` asks for
``Authorization: Bearer <KONVO_METRICS_TOKEN>`` when that is set (open otherwise, for a scraper
on a private network)."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from server.config import Settings
from server.graphql import graphiql
from server.graphql.context import bearer_token
from server.graphql.operator import PATH as OPERATOR_PATH
from server.runtime import Runtime
from server.web.body_limit import BodySizeLimit
from server.web.graphql_view import KonvoGraphQL
from server.web.hooks import hook_routes
from server.web.metrics import exposition
from server.web.operator import OperatorGraphQL
from server.web.whatsapp import whatsapp_routes


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
        if not metrics_allowed(settings.metrics_token, request.headers.get("authorization")):
            return PlainTextResponse(
                "send the metrics token: Authorization: Bearer <KONVO_METRICS_TOKEN>",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return PlainTextResponse(exposition(runtime, graphql.gauges), media_type="text/plain; version=0.0.4")

    # The operator API exists only when its key is configured (server/graphql/operator.py).
    operator = (
        [Route(OPERATOR_PATH, OperatorGraphQL(runtime), methods=["POST"])] if settings.operator_key else []
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *operator,
            Route(graphiql.ASSET_PREFIX + "{name}", graphiql.asset),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            *whatsapp_routes(runtime.services),
            *hook_routes(runtime.services),
        ],
        lifespan=lifespan,
        middleware=[Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)],
    )
    app.state.runtime = runtime
    return app


def metrics_allowed(token: str | None, authorization: str | None) -> bool:
    """Open when no token is configured; otherwise the bearer token must match (constant time)."""
    if not token:
        return True
    given = bearer_token(authorization)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
