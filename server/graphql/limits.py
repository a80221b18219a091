"""The API's limits, each refusing with an ``extensions.code`` a client can act on.

- document size and shape: strawberry's ``QueryDepthLimiter`` (``QUERY_TOO_DEEP``),
  ``MaxTokensLimiter`` (``QUERY_TOO_LARGE``) and ``MaxAliasesLimiter`` (``TOO_MANY_ALIASES``);
- the operation's static cost (``server/graphql/query_cost.py``) against a per-operation maximum
  (``QUERY_TOO_COSTLY`` with ``cost`` and ``limit``), before any resolver runs;
- cost points per API key and window, counted in Redis so every server process shares the count
  (``RATE_LIMITED`` with ``retryAfter`` seconds; HTTP 429 with ``Retry-After``): each operation
  spends its cost, at least 1;
Request body size is capped by ``server/web/body_limit.py`` (HTTP 413) before anything is parsed;
JSON nesting is checked by ``server/json_limits.py`` where bodies are parsed.
Page sizes are capped in ``pagination.py`` and subscriptions per WebSocket in ``server/web/graphql_view.py``.
All numbers are settings (``KONVO_MAX_QUERY_DEPTH`` ... in ``server/config.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from graphql import GraphQLError
from graphql.validation import ValidationContext, ValidationRule
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, SchemaExtension
from strawberry.extensions.query_depth_limiter import IgnoreContext, create_validator

from server.config import Settings
from server.graphql.query_cost import operation_cost
from server.redis_clients import RedisCommands, register_script

log = logging.getLogger(__name__)

# One round trip, atomic: spend this operation's points and say how long the window still runs.
_HIT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


class RateLimiter:
    """A fixed window per API key in Redis: ``limit`` cost points per ``window_seconds``."""

    def __init__(self, redis: RedisCommands, prefix: str, limit: int, window_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.limit = limit
        self.window_ms = window_seconds * 1000
        self._script = register_script(redis, _HIT)

    async def hit(self, key_id: str, points: int = 1) -> float | None:
        """Spend ``points``; None when the window still allows them, else the seconds until it resets."""
        count, ttl_ms = await self._script(keys=[self._prefix + key_id], args=[self.window_ms, points])
        if int(count) <= self.limit:
            return None
        return max(1.0, math.ceil(int(ttl_ms) / 1000))


class Limited(Protocol):
    """What the limits read from a request's context (the tenant's ``Context`` and the operator's):
    the key's rate window, the key once authenticated, and the HTTP response a refusal marks 429."""

    @property
    def rate_limiter(self) -> RateLimiter | None: ...

    @property
    def key_id(self) -> str | None: ...

    @property
    def response(self) -> Response | WebSocket | None: ...


class QueryBudget(SchemaExtension):
    """Refuses an operation that costs too much, then spends its cost from the key's rate window.

    Runs in ``on_execute`` (after parsing and validation) because that is the one hook strawberry
    turns into an error result on every transport (HTTP and each WebSocket subscribe); a refused
    operation never reaches a resolver, so it never reads the store. A too costly operation
    still spends 1 point: refusals are not a free way to hammer the server.
    """

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        assert execution.graphql_document is not None
        cost = operation_cost(
            execution.schema._schema,
            execution.graphql_document,
            execution.operation_name,
            execution.variables,
        )
        too_costly = cost > self.max_cost
        await _spend(execution.context, 1 if too_costly else max(1, cost))
        if too_costly:
            raise GraphQLError(
                f"this operation costs {cost}, more than the {self.max_cost} one operation may cost: "
                "ask for fewer objects (smaller first/last, fewer nested lists or aliases)",
                extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": self.max_cost},
            )
        yield


async def _spend(context: Limited | None, points: int) -> None:
    if context is None:  # executed without a transport (a test or tool): no key, no window
        return
    limiter, key_id = context.rate_limiter, context.key_id
    if limiter is None or key_id is None:
        return
    try:
        retry_after = await limiter.hit(key_id, points)
    except Exception:
        log.exception("rate limiter unavailable")
        raise GraphQLError(
            "the server cannot take requests right now; try again shortly",
            extensions={"code": "UNAVAILABLE"},
        ) from None
    if retry_after is not None:
        _mark_http_response(context, retry_after)
        raise GraphQLError(
            f"rate limit of {limiter.limit} cost points per {limiter.window_ms // 1000}s "
            f"reached for this API key; retry in {int(retry_after)}s",
            extensions={"code": "RATE_LIMITED", "retryAfter": int(retry_after)},
        )


def _mark_http_response(context: Limited, retry_after: float) -> None:
    response = context.response
    if isinstance(response, Response):  # over a WebSocket the error payload says it all
        response.status_code = 429
        response.headers["Retry-After"] = str(int(retry_after))


def _skip_introspection(ignore: IgnoreContext) -> bool:
    # Tools (GraphiQL, codegen) send a deep introspection query; it is bounded by the token limit.
    return ignore.field_name.startswith("__")


class DepthLimit(AddValidationRules):
    """strawberry's depth rule, made total: it raises on documents that other rules refuse anyway
    (``ValueError`` on an empty selection set, which graphql-core 3.3 parses, or on an integer
    literal longer than Python converts; ``KeyError`` on a fragment that is not defined), and that
    reached the client as an error without a code. Such a document is refused as a validation
    error instead."""

    def __init__(self, max_depth: int) -> None:
        depth_rule = create_validator(max_depth, _skip_introspection)

        class TotalDepthRule(ValidationRule):
            def __init__(self, context: ValidationContext) -> None:
                super().__init__(context)
                try:
                    depth_rule(context)
                except (ValueError, KeyError):
                    context.report_error(
                        GraphQLError(
                            "this document is not valid: an empty selection, an unknown fragment or"
                            " a number literal too long to read"
                        )
                    )

        super().__init__([TotalDepthRule])


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions that enforce the configured limits (a fresh one per request)."""
    tokens, depth, aliases = settings.max_query_tokens, settings.max_query_depth, settings.max_query_aliases
    max_cost = settings.max_query_cost
    return [
        lambda: MaxTokensLimiter(max_token_count=tokens),
        lambda: DepthLimit(depth),
        lambda: MaxAliasesLimiter(max_alias_count=aliases),
        lambda: QueryBudget(max_cost),
    ]
