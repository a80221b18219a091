"""The ASGI GraphQL endpoint: HTTP and ``graphql-transport-ws``, authenticated by API key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from server.graphql.context import Context
from server.graphql.schema import schema
from server.runtime import Runtime

MAX_SUBSCRIPTIONS_PER_CONNECTION = 50


class KonvoGraphQL(GraphQL[Context, None]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(
            schema,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
        )
        self.runtime = runtime

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(runtime=self.runtime, request=request, response=response)
        if isinstance(request, Request):
            await context.authenticate(request.headers.get("authorization"))
        return context

    async def on_ws_connect(self, context: Context) -> Any:
        params = context.connection_params or {}
        authorization = params.get("authorization") or params.get("Authorization")
        if not await context.authenticate(authorization):
            raise ConnectionRejectionError({"message": context.auth_error, "code": "UNAUTHENTICATED"})
        return None
