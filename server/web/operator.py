"""``POST /operator/graphql``: the operator schema (``server/graphql/operator.py``) served with the
tenant endpoint's HTTP handling, behind the operator key (constant-time compare) and a rate window
that also counts refused requests per client address."""

from __future__ import annotations

import hmac
import logging

from cross_web import HTTPException
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from server.graphql.context import bearer_token
from server.graphql.limits import RateLimiter, limit_extensions
from server.graphql.operator import OPERATOR_KEY_ID, OperatorContext, build_operator_schema
from server.runtime import Runtime
from server.web.graphql_view import KonvoGraphQL, SocketGauges

log = logging.getLogger(__name__)


class OperatorGraphQL(KonvoGraphQL):
    """The tenant endpoint's HTTP handling (coded protocol errors, JSON checks) on the operator
    schema; POST only (no WebSocket, no GraphiQL)."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        assert settings.operator_key is not None, "mounted only when KONVO_OPERATOR_KEY is set"
        # KonvoGraphQL.__init__ builds the tenant schema; this endpoint sets up the same way itself.
        GraphQL.__init__(
            self,
            build_operator_schema(*limit_extensions(settings)),
            graphql_ide=None,
            subscription_protocols=(),
        )
        self.runtime = runtime
        self.gauges = SocketGauges()
        self._key = settings.operator_key.get_secret_value().encode()
        self.rate_limiter = RateLimiter(
            runtime.redis,
            runtime.prefix + "operator-rate:",
            settings.operator_rate_limit_points,
            settings.rate_limit_window_seconds,
        )

    # The tenant view's HTTP handling with a context of its own (the one the operator schema reads).
    async def get_context(  # type: ignore[override]
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> OperatorContext:
        context = OperatorContext(self.runtime.services, request, response, self.rate_limiter)
        given = bearer_token(request.headers.get("authorization"))
        if given is not None and hmac.compare_digest(given.encode(), self._key):
            context.key_id = OPERATOR_KEY_ID
            return context
        try:
            retry_after = await self.rate_limiter.hit(f"refused:{context.client}")
        except RedisError as exc:  # still refused; only the count of refusals is missing
            log.warning("operator API: cannot count refused requests (%s)", type(exc).__name__)
            retry_after = None
        if retry_after is not None:
            raise HTTPException(429, f"too many refused operator requests; retry in {int(retry_after)}s")
        log.info("operator API: a request without the operator key from %s", context.client)
        return context
