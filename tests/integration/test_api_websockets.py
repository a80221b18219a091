"""WebSocket limits and key checks (issue 15, findings 1, 8 and 10) over a real uvicorn socket:
malformed messages close with 4400, sockets per key are capped across processes (4429), and a
revoked key's sockets are closed (4403) whether the revocation message arrives or not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from server.clock import Timing, VirtualTiming
from server.config import Settings
from server.graphql.socket_slots import SocketSlots
from server.redis_keys import socket_slots_prefix
from server.runtime import Runtime
from tests.integration.conftest import client_for, make_workspace
from tests.support.graphql import GraphQLClient, eventually
from tests.support.live import live_server
from tests.support.ws import GraphQLWebSocket

WATCH = "subscription($p: String!) { contactUpdated(phone: $p) { version } }"
PHONE = "+34600222333"


@pytest.fixture
async def ws_runtime(fast_settings: Settings, timing: Timing) -> AsyncIterator[Runtime]:
    settings = fast_settings.model_copy(
        update={"max_ws_frame_bytes": 4096, "max_sockets_per_key": 2, "api_key_recheck_seconds": 0.5}
    )
    runtime = Runtime(settings, timing=timing)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def close_code(ws: GraphQLWebSocket, timeout: float = 10.0) -> int:
    """Read until the server closes the socket; the close code it sent."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.connection.recv(), timeout)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def refused_with(url: str, key: str) -> int:
    """The close code a socket opened with ``key`` gets before its connection_ack."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with GraphQLWebSocket(url, key):
            pass
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def subscribe(**payload: Any) -> str:
    return json.dumps({"id": "1", "type": "subscribe", "payload": payload})


MALFORMED: dict[str, str | bytes] = {
    "larger than the frame limit": subscribe(query="{ workspace { id } }", variables={"pad": "x" * 5000}),
    "deep JSON": '{"type": "subscribe", "id": "1", "payload": ' + "[" * 5000 + "]" * 5000 + "}",
    "payload a string": json.dumps({"id": "1", "type": "subscribe", "payload": "str"}),
    "variables a string": subscribe(query="{ workspace { id } }", variables="x"),
    "query missing": subscribe(variables={}),
    "not JSON": "{type: subscribe",
    "JSON but not an object": "[1, 2]",
    "type not a string": json.dumps({"type": 5}),
    "type unknown and long": json.dumps({"type": "x" * 500}),
    "id not a string": json.dumps({"id": 7, "type": "complete"}),
    "binary": b'{"type": "ping"}',
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_message_closes_the_socket_with_4400(
    ws_runtime: Runtime, frame: str | bytes
) -> None:
    key = await make_workspace(ws_runtime)
    async with live_server(ws_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
        await ws.connection.send(frame)
        assert await close_code(ws) == 4400
        assert ws.connection.close_reason


async def test_a_message_within_the_limits_still_works(ws_runtime: Runtime) -> None:
    key = await make_workspace(ws_runtime)
    async with live_server(ws_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
        await ws.connection.send(subscribe(query="{ workspace { id } }", variables={"pad": "x" * 3000}))
        assert (await ws.next_data("1"))["workspace"]["id"]
        assert (await ws.receive())["type"] == "complete"
        await ws.send({"type": "ping", "payload": None})
        assert (await ws.receive())["type"] == "pong"


async def test_sockets_per_key_are_capped_across_processes(ws_runtime: Runtime) -> None:
    key, other_key = await make_workspace(ws_runtime), await make_workspace(ws_runtime, "ws_other")
    key_id = (await ws_runtime.workspaces.find_key(key) or {})["key_id"]
    # Another server process on the same Redis already holds one of the key's two sockets.
    elsewhere = SocketSlots(ws_runtime.redis, socket_slots_prefix(ws_runtime.prefix), limit=2)
    slot = await elsewhere.acquire(key_id)
    assert slot is not None
    async with live_server(ws_runtime) as (host, _):
        url = f"ws://{host}/graphql"
        async with GraphQLWebSocket(url, key) as first:
            assert await refused_with(url, key) == 4429
            async with GraphQLWebSocket(url, other_key):  # other keys are not affected
                pass
            await elsewhere.release(slot)
            async with GraphQLWebSocket(url, key) as second:
                await first.subscribe("a", "{ workspace { id } }")
                await second.subscribe("b", "{ workspace { id } }")
                assert await first.next_data("a") == await second.next_data("b")
        # Closed sockets free their slots.
        async with GraphQLWebSocket(url, key), GraphQLWebSocket(url, key):
            pass


async def test_a_dead_processs_socket_slots_expire(ws_runtime: Runtime) -> None:
    crashed = SocketSlots(ws_runtime.redis, socket_slots_prefix(ws_runtime.prefix), limit=1, ttl_seconds=0.3)
    assert await crashed.acquire("key_x") is not None
    assert await crashed.acquire("key_x") is None
    await eventually(lambda: crashed.acquire("key_x"), lambda slot: slot is not None)


async def admin_key_and_websocket_key(runtime: Runtime) -> tuple[GraphQLClient, str, str]:
    """An ADMIN client, and a second ADMIN key (plain, and its id) to open sockets with."""
    admin = client_for(runtime, await make_workspace(runtime))
    created = await admin('mutation { createApiKey(name: "socket", role: ADMIN) { key apiKey { id } } }')
    return admin, created["createApiKey"]["key"], created["createApiKey"]["apiKey"]["id"]


async def test_revoking_a_key_closes_its_sockets_and_refuses_it_everywhere(ws_runtime: Runtime) -> None:
    admin, key, key_id = await admin_key_and_websocket_key(ws_runtime)
    try:
        async with live_server(ws_runtime) as (host, _):
            url = f"ws://{host}/graphql"
            async with GraphQLWebSocket(url, key) as ws:
                await ws.subscribe("c", WATCH, p=PHONE)
                await admin("mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", id=key_id)
                assert await close_code(ws) == 4403
            assert await refused_with(url, key) == 4403
        refused = await admin.http.post(
            "/graphql", json={"query": "{ apiKeys { id } }"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await admin.http.aclose()


@pytest.mark.parametrize("timing", ["virtual"], indirect=True)
async def test_a_socket_is_closed_even_when_the_revocation_message_is_lost(
    ws_runtime: Runtime, timing: VirtualTiming
) -> None:
    admin, key, key_id = await admin_key_and_websocket_key(ws_runtime)
    workspace_id = (await ws_runtime.workspaces.find_key(key) or {})["workspace_id"]
    try:
        async with live_server(ws_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
            await ws.subscribe("c", WATCH, p=PHONE)
            # Revoked in the store only, as if the pub/sub message had been lost on the way.
            await ws_runtime.workspaces.revoke_key(workspace_id, key_id, ws_runtime.clock.now())
            await timing.advance(ws_runtime.settings.api_key_recheck_seconds)  # the guard's sweep
            assert await close_code(ws) == 4403
    finally:
        await admin.http.aclose()


async def test_every_operation_rechecks_its_key(ws_runtime: Runtime) -> None:
    admin, key, key_id = await admin_key_and_websocket_key(ws_runtime)
    workspace_id = (await ws_runtime.workspaces.find_key(key) or {})["workspace_id"]
    try:
        async with live_server(ws_runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", key) as ws:
            await ws_runtime.workspaces.revoke_key(workspace_id, key_id, ws_runtime.clock.now())
            await ws.subscribe("keys", "{ apiKeys { id } }")
            await ws.subscribe("mint", 'mutation { createApiKey(name: "x", role: ADMIN) { key } }')
            seen: list[dict[str, Any]] = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    seen.append(json.loads(await asyncio.wait_for(ws.connection.recv(), 10)))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            assert [m for m in seen if m.get("type") == "next"] == []
        assert [k["name"] for k in await ws_runtime.workspaces.list_keys(workspace_id)] == ["test"]
    finally:
        await admin.http.aclose()
