"""The ASGI GraphQL endpoint: HTTP and ``graphql-transport-ws``, authenticated by API key.

Beyond strawberry's view it: serves GraphiQL from local assets, answers protocol-level HTTP
errors as GraphQL JSON with an ``extensions.code``, refuses JSON nested too deep (400), caps
running operations per WebSocket with a coded error, and keeps live gauges (connections,
operation tasks) for ``/metrics``.

WebSockets: ``connection_init`` authenticates the key and takes one of its socket slots
(``KONVO_MAX_SOCKETS_PER_KEY`` across processes, else close 4429); every ``subscribe`` re-checks
the key (``KeyGuard``) and a revocation on any process closes the key's sockets (4403).
Oversized, deep, non-JSON or ill-shaped messages close the socket with 4400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import NonTextMessageReceived, WebSocketDisconnected
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from server.errors import WorkspaceDisabled
from server.graphql.context import Context
from server.graphql.graphiql import render_page
from server.graphql.key_guard import REVOKED_REASON
from server.graphql.limits import RateLimiter, limit_extensions
from server.graphql.schema import build_schema
from server.graphql.ws_messages import MAX_REASON_BYTES, MalformedMessage, read_message
from server.json_limits import JsonTooDeep, check_json_depth
from server.runtime import Runtime
from server.workspace_gate import refusal

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


@dataclass
class SocketGauges:
    """What WebSocket clients hold on this process right now; all drop to zero when they leave."""

    connections: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class _LimitedWebSocketAdapter(ASGIWebSocketAdapter):
    """Reads messages through ``read_message`` (size, nesting, JSON, shape); closing is idempotent,
    since a revocation may close a socket the handler is closing too."""

    @property
    def konvo(self) -> KonvoGraphQL:
        """The view this adapter serves (strawberry types ``view`` as its generic base)."""
        assert isinstance(self.view, KonvoGraphQL)
        return self.view

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        settings = self.konvo.runtime.settings
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                yield read_message(
                    text, settings.max_ws_frame_bytes, settings.max_json_depth, self.konvo.decode_json
                )
        except KeyError as exc:
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            pass

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            fitting = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
            await self.ws.close(code=code, reason=fitting)


class _TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """strawberry's handler, with key checks, socket slots, message limits and a coded subscription cap."""

    view: KonvoGraphQL
    _slot: str | None = None
    _unwatch: Callable[[], None] | None = None
    _closing: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        gauges = self.view.gauges
        gauges.connections += 1
        self.on_request_accepted()
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)  # type: ignore[arg-type]
            except MalformedMessage as exc:
                await self.handle_invalid_message(str(exc))
            except NonTextMessageReceived:
                await self.handle_invalid_message("WebSocket message type must be text")
        except WebSocketDisconnected:
            pass
        finally:
            await self.shutdown()
            await self._leave()
            gauges.connections -= 1

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Authenticate the key and take one of its socket slots before acknowledging."""
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        context = self.context
        context.connection_params = message.get("payload") or {}
        params = context.connection_params
        if not await context.authenticate(params.get("authorization") or params.get("Authorization")):
            disabled = context.auth_code == WorkspaceDisabled.code
            reason = context.auth_error if disabled else None
            await self.websocket.close(code=4403, reason=reason or "Forbidden")
            return
        assert context.key_id is not None
        runtime = self.view.runtime
        try:
            self._slot = await runtime.socket_slots.acquire(context.key_id)
        except RedisError:
            await self.websocket.close(code=1013, reason="cannot take WebSockets right now; retry shortly")
            return
        if self._slot is None:
            limit = runtime.socket_slots.limit
            await self.websocket.close(code=4429, reason=f"this API key holds {limit} WebSockets already")
            return
        self._unwatch = runtime.key_guard.watch(context.key_id, self.revoked, context.workspace_id)
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not await self._key_still_live(message["id"]):
            return
        limit = self.max_subscriptions_per_connection
        accepted = self.connection_acknowledged and message.get("id") not in self.operations
        if accepted and limit is not None and len(self.operations) >= limit:
            error = GraphQLError(
                f"this connection already runs {limit} operations; complete one or open another connection",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
            )
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(message["id"]) if accepted else None
        if operation is not None and operation.task is not None:
            self.view.gauges.track(operation.task)

    async def _key_still_live(self, operation_id: str) -> bool:
        """Every operation re-checks its key and its workspace: a revoked key or a disabled
        workspace closes the socket (4403)."""
        context = self.context
        assert context.workspace_id is not None and context.key_id is not None
        runtime = self.view.runtime
        try:
            stopped = refusal(context.workspace_id, await runtime.workspace_gate.status(context.workspace_id))
            if stopped is not None:
                self.revoked(stopped.message)
                return False
            live = await runtime.key_guard.is_live(context.workspace_id, context.key_id)
        except Exception as exc:
            log.warning("could not re-check an API key (%s); operation refused", type(exc).__name__)
            error = GraphQLError(
                "the server cannot take requests right now; try again shortly",
                extensions={"code": "UNAVAILABLE"},
            )
            await self.send_message({"id": operation_id, "type": "error", "payload": [error.formatted]})
            return False
        if not live:
            self.revoked()
        return live

    def revoked(self, reason: str = REVOKED_REASON) -> None:
        """The key was revoked (or its workspace disabled): cancel every operation now, so no event
        follows, and close (4403)."""
        operations = list(self.operations.values())
        self.operations.clear()
        for operation in operations:
            if operation.task is not None:
                operation.task.cancel()
        if self._closing is None:
            self._closing = asyncio.create_task(
                self.websocket.close(code=4403, reason=reason), name="close-revoked-socket"
            )

    async def _leave(self) -> None:
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._slot is not None:
            slot, self._slot = self._slot, None
            try:
                await self.view.runtime.socket_slots.release(slot)
            except RedisError as exc:  # the slot expires on its own
                log.warning("could not free a WebSocket slot: %s", type(exc).__name__)


class KonvoGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = _TransportWSHandler
    websocket_adapter_class = _LimitedWebSocketAdapter

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        super().__init__(
            build_schema(*limit_extensions(settings)),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self.runtime = runtime
        self.gauges = SocketGauges()
        self.rate_limiter = RateLimiter(
            runtime.redis,
            runtime.prefix + "rate:",
            settings.rate_limit_points,
            settings.rate_limit_window_seconds,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = self.http_error(exc.status_code, exc.reason)
        if (
            GRAPHQL_RESPONSE_JSON in request.headers.get("accept", "")
            and response.media_type == "application/json"
        ):
            response = as_graphql_response_json(response)
        await response(scope, receive, send)

    @staticmethod
    def http_error(status: int, message: str) -> JSONResponse:
        """A protocol-level refusal as a GraphQL response body, so clients parse one shape."""
        code = _HTTP_CODES.get(status, "BAD_REQUEST")
        return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """strawberry's, minus subscriptions: over plain HTTP they have no way to stream."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        if not isinstance(context, Context) or context.workspace_id is None:  # the operator's API, or no key
            return await self._execute(request_adapter, context, root_value, request_data, allowed)
        # The operation is its workspace's work in flight (a deletion waits for its writes).
        gate = self.runtime.workspace_gate
        admitted = await gate.admit(context.workspace_id)  # the status is cached since the key check
        if admitted is None:  # disabled or deleted since the key was checked: refused as then
            stopped = refusal(context.workspace_id, await gate.status(context.workspace_id))
            context.workspace_id = None
            if stopped is not None:
                context.auth_error, context.auth_code = stopped.message, stopped.code
        with admitted or nullcontext():
            return await self._execute(request_adapter, context, root_value, request_data, allowed)

    async def _execute(
        self,
        request_adapter: AsyncHTTPRequestAdapter,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
        allowed: set[OperationType],
    ) -> ExecutionResult:
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            if exc.operation_type == OperationType.SUBSCRIPTION:
                reason = "subscriptions run over the WebSocket (graphql-transport-ws) at this URL"
            else:
                reason = exc.as_http_error_reason(request_adapter.method)
            raise HTTPException(400 if request_adapter.method == "POST" else 405, reason) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(
            services=self.runtime.services,
            key_guard=self.runtime.key_guard,
            imports=self.runtime.contact_services.imports,
            request=request,
            response=response,
        )
        context.rate_limiter = self.rate_limiter
        if isinstance(request, Request):
            await context.authenticate(request.headers.get("authorization"))
        return context

    async def render_graphql_ide(self, request: Request) -> Response:
        return render_page()

    def parse_json(self, data: str | bytes) -> Any:
        """A request body (or the GET ``variables``/``extensions``) must be a JSON object, nested
        no deeper than ``KONVO_MAX_JSON_DEPTH`` (checked before parsing)."""
        try:
            check_json_depth(data, self.runtime.settings.max_json_depth)
        except JsonTooDeep as exc:
            raise HTTPException(400, str(exc)) from None
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, 'expected a JSON object like {"query": "..."}')
        return parsed

    def decode_json(self, data: str | bytes) -> object:
        # Reject NaN/Infinity literals, which are not JSON and would otherwise reach resolvers, and
        # integers longer than Python converts (a ValueError that would escape as a 500).
        return json.loads(data, parse_constant=_reject_constant, parse_int=_bounded_int)


def as_graphql_response_json(response: Response) -> Response:
    """The GraphQL-over-HTTP media type, for clients that ask for it: a request that could not be
    executed (parse, validation, variable errors: no error has a ``path``) is a 400 without ``data``."""
    body = json.loads(bytes(response.body))
    status = response.status_code
    errors = body.get("errors") if isinstance(body, dict) else None
    if status == 200 and errors and body.get("data") is None and all("path" not in e for e in errors):
        status = 400
        body.pop("data", None)
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type=f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8",
    )


def _reject_constant(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


MAX_INT_DIGITS = 4300  # Python's own limit for int(str); NUMBER fields hold far less (values.py)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise json.JSONDecodeError(f"an integer of {len(text)} digits is too long", text[:20], 0)
    return int(text)
