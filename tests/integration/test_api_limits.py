"""The API's limits: document depth/tokens/aliases, page size, per-key rate, body size,
subscriptions per WebSocket; each refusal carries an ``extensions.code``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from server.config import Settings
from server.runtime import Runtime
from server.web.app import create_app
from tests.integration.conftest import client_for, make_workspace
from tests.support.graphql import GraphQLClient
from tests.support.live import live_server
from tests.support.ws import GraphQLWebSocket

INTROSPECTION = """query IntrospectionQuery { __schema { queryType { name } types { ...FullType } } }
fragment FullType on __Type { kind name fields(includeDeprecated: true) { name args { ...InputValue }
  type { ...TypeRef } } inputFields { ...InputValue } }
fragment InputValue on __InputValue { name type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }"""


def codes(body: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


def nested_runs(depth: int) -> str:
    """runs -> edges -> node -> contact -> runs -> contact ... as deep as asked."""
    inner = "id"
    for level in range(depth):
        inner = f"contact {{ runs {{ {inner} }} }}" if level % 2 == 0 else f"id {inner}"
    return f"{{ runs {{ edges {{ node {{ {inner} }} }} }} }}"


async def test_document_limits_have_codes(runtime: Runtime, gql: GraphQLClient) -> None:
    settings = runtime.settings
    too_deep = await gql.raw(nested_runs(settings.max_query_depth))
    assert set(codes(too_deep)) == {"QUERY_TOO_DEEP"}, too_deep
    assert "errors" not in await gql.raw(nested_runs(2))

    too_long = await gql.raw("{ " + "__typename " * (settings.max_query_tokens + 1) + "}")
    assert codes(too_long) == ["QUERY_TOO_LARGE"], too_long

    aliases = " ".join(f"a{i}: __typename" for i in range(settings.max_query_aliases + 1))
    assert codes(await gql.raw("{ " + aliases + " }")) == ["TOO_MANY_ALIASES"]

    assert codes(await gql.raw("{ flows { id }")) == ["GRAPHQL_PARSE_FAILED"]
    assert codes(await gql.raw("{ nope }")) == ["GRAPHQL_VALIDATION_FAILED"]
    assert codes(await gql.raw("query($f: Int) { runs(first: $f) { pageInfo { hasNextPage } } }", f="x")) == [
        "INVALID_INPUT"
    ]

    # Tools' introspection (GraphiQL, codegen) is deep but allowed.
    introspected = await gql.raw(INTROSPECTION)
    assert "errors" not in introspected and introspected["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_page_sizes_are_capped(gql: GraphQLClient) -> None:
    for first in (0, -1, 101):
        body = await gql.raw("query($f: Int) { runs(first: $f) { pageInfo { hasNextPage } } }", f=first)
        assert codes(body) == ["INVALID_INPUT"], (first, body)
    assert "errors" not in await gql.raw("{ runs(first: 100) { pageInfo { hasNextPage } } }")


@pytest.fixture
async def strict_runtime(fast_settings: Settings) -> AsyncIterator[Runtime]:
    strict = fast_settings.model_copy(
        update={
            "rate_limit_points": 3,
            "rate_limit_window_seconds": 60,
            "max_body_bytes": 2000,
            "max_subscriptions_per_connection": 2,
        }
    )
    runtime = Runtime(strict)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_rate_limit_is_per_key_and_shared_by_every_process(strict_runtime: Runtime) -> None:
    key, other_key = (
        await make_workspace(strict_runtime),
        await make_workspace(strict_runtime, "ws_rate_other"),
    )
    # Two apps = two server processes' views on the same Redis.
    first, second = client_for(strict_runtime, key), client_for(strict_runtime, key)
    other = client_for(strict_runtime, other_key)
    try:
        for client in (first, second, first):
            assert "errors" not in await client.raw("{ workspace { id } }")
        refused = await second.http.post(
            "/graphql", json={"query": "{ workspace { id } }"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.status_code == 429
        body = refused.json()
        assert codes(body) == ["RATE_LIMITED"]
        retry = body["errors"][0]["extensions"]["retryAfter"]
        assert 1 <= retry <= 60 and refused.headers["Retry-After"] == str(retry)
        assert "errors" not in await other.raw("{ workspace { id } }")
    finally:
        for client in (first, second, other):
            await client.http.aclose()


async def test_request_bodies_over_the_cap_are_refused_before_parsing(strict_runtime: Runtime) -> None:
    app = create_app(strict_runtime.settings, runtime=strict_runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        big = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 3000}})
        declared = await http.post("/graphql", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and codes(declared.json()) == ["PAYLOAD_TOO_LARGE"]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 500):
                yield big[start : start + 500].encode()

        streamed = await http.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and codes(streamed.json()) == ["PAYLOAD_TOO_LARGE"]

        broken = await http.post(
            "/graphql", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400 and codes(broken.json()) == ["BAD_REQUEST"]


async def test_subscriptions_per_connection_are_capped(strict_runtime: Runtime) -> None:
    key = await make_workspace(strict_runtime)
    async with live_server(strict_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
        query = "subscription($p: String!) { contactUpdated(phone: $p) { version } }"
        await ws.subscribe("1", query, p="+34600000001")
        await ws.subscribe("2", query, p="+34600000002")
        await ws.subscribe("3", query, p="+34600000003")
        refused = await ws.receive()
        while refused["type"] == "ping":
            refused = await ws.receive()
        assert refused["type"] == "error" and refused["id"] == "3"
        assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        await ws.send({"id": "1", "type": "complete"})
        # Completing one frees a slot (the handler drops it before reading the next message).
        await ws.subscribe("4", query, p="+34600000004")
        await ws.send({"id": "5", "type": "subscribe", "payload": {"query": "{ workspace { id } }"}})
        answer = await ws.receive()
        assert answer["id"] == "5" and answer["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def test_websocket_without_a_valid_key_is_closed(runtime: Runtime) -> None:
    async with live_server(runtime) as (host, _):
        with pytest.raises(Exception, match="4403"):
            async with GraphQLWebSocket(f"ws://{host}/graphql", "konvo_wrong"):
                pass


async def test_rate_limit_counts_websocket_operations_too(strict_runtime: Runtime) -> None:
    key = await make_workspace(strict_runtime)
    async with live_server(strict_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
        results = []
        for n in range(4):
            await ws.send({"id": str(n), "type": "subscribe", "payload": {"query": "{ workspace { id } }"}})
            while True:
                message = await ws.receive()
                if message.get("id") == str(n) and message["type"] in ("next", "error"):
                    results.append(message)
                    break
        assert [m["type"] for m in results[:3]] == ["next"] * 3
        assert all("errors" not in m["payload"] for m in results[:3])
        refused = results[3]["payload"]
        errors = refused if isinstance(refused, list) else refused["errors"]
        assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
