"""Issue 15, finding 1: a key revoked on one server process stops working on a WebSocket that was
opened on another process before the revoke: the socket is closed with 4403, no event follows
the revocation, and nothing more can be done with the key (two real ``konvo serve`` processes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import ServiceURLs
from tests.e2e.servers import replicas
from tests.support.graphql import GraphQLClient
from tests.support.ws import GraphQLWebSocket

pytestmark = pytest.mark.e2e

PHONE = "+34611000333"
WATCH = "subscription($p: String!) { contactUpdated(phone: $p) { version } }"
SAY = "mutation($p: String!, $t: String!) { sandboxInbound(phone: $p, text: $t) }"


async def test_a_key_revoked_on_one_process_is_closed_out_of_a_socket_on_another(
    services: ServiceURLs, tmp_path: Path
) -> None:
    with replicas(services, tmp_path, count=2) as (a, b):
        async with httpx.AsyncClient(base_url=b.base_url, timeout=30) as on_b:
            admin = GraphQLClient(on_b, b.api_key)
            created = await admin('mutation { createApiKey(name: "ops", role: ADMIN) { key apiKey { id } } }')
            key, key_id = created["createApiKey"]["key"], created["createApiKey"]["apiKey"]["id"]
            await admin(SAY, p=PHONE, t="hola")

            async with GraphQLWebSocket(f"ws://127.0.0.1:{a.port}/graphql", key) as ws:
                await ws.subscribe("watch", WATCH, p=PHONE)
                before = (await ws.next_data("watch"))["contactUpdated"]["version"]
                await ws.subscribe("keys", "{ apiKeys { id } }")
                assert key_id in {k["id"] for k in (await ws.next_data("keys"))["apiKeys"]}

                await admin("mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", id=key_id)
                await admin(SAY, p=PHONE, t="after the revoke")  # an event the old socket must not see

                seen: list[dict[str, Any]] = []
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        seen.append(json.loads(await asyncio.wait_for(ws.connection.recv(), 10)))
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
                events = [m for m in seen if m.get("type") == "next" and m.get("id") == "watch"]
                assert all(m["payload"]["data"]["contactUpdated"]["version"] <= before for m in events), seen
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.send(
                        {"id": "mint", "type": "subscribe", "payload": {"query": "{ apiKeys { id } }"}}
                    )

            # Nothing more with that key, on either process, over either transport.
            for process in (a, b):
                with pytest.raises(websockets.ConnectionClosed) as refused:
                    async with GraphQLWebSocket(f"ws://127.0.0.1:{process.port}/graphql", key):
                        pass
                assert refused.value.rcvd is not None and refused.value.rcvd.code == 4403
                async with httpx.AsyncClient(base_url=process.base_url, timeout=30) as http:
                    answer = await http.post(
                        "/graphql",
                        json={"query": 'mutation { createApiKey(name: "x", role: ADMIN) { key } }'},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            names = [k["name"] for k in (await admin("{ apiKeys { name } }"))["apiKeys"]]
            assert "x" not in names and "ops" not in names
        assert a.interrupt() == 0 and b.interrupt() == 0
