"""Subscriptions over a real WebSocket: every update in order, and nothing left behind on leave."""

from __future__ import annotations

import asyncio

import httpx

from server.runtime import Runtime
from tests.support.graphql import GraphQLClient, eventually
from tests.support.live import live_server
from tests.support.ws import GraphQLWebSocket

WATCH = "subscription($p: String!) { contactUpdated(phone: $p) { version } }"
PHONE = "+34600123456"


async def gauges(host: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        text = (await http.get("/metrics")).text
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines() if not line.startswith("#"))
    }


async def test_a_subscriber_sees_every_update_in_order(
    runtime: Runtime, api_key: str, gql: GraphQLClient
) -> None:
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=PHONE)
    async with live_server(runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", api_key) as ws:
        await ws.subscribe("c", WATCH, p=PHONE)
        first = (await ws.next_data("c"))["contactUpdated"]["version"]
        # Concurrent writers: the contact's actor serializes them; each commit is one version.
        await asyncio.gather(
            *(
                gql(
                    "mutation($p: String!, $t: String!) { sandboxInbound(phone: $p, text: $t) }",
                    p=PHONE,
                    t=f"m{n}",
                )
                for n in range(20)
            )
        )
        last = (await gql("query($p: String!) { contact(phone: $p) { version } }", p=PHONE))["contact"][
            "version"
        ]
        seen = [first]
        while seen[-1] < last:
            seen.append((await ws.next_data("c"))["contactUpdated"]["version"])
        assert seen == list(range(first, last + 1))


async def test_leaving_clients_leave_no_task_or_listener_behind(runtime: Runtime, api_key: str) -> None:
    async with live_server(runtime) as (host, _):
        assert runtime.pubsub.subscriber_count == 0
        for leave in ("complete", "close"):
            async with GraphQLWebSocket(f"ws://{host}/graphql", api_key) as ws:
                for n in range(3):
                    await ws.subscribe(str(n), WATCH, p=f"+3460000000{n}")
                await ws.subscribe("runs", "subscription { runUpdated { id } }")
                during = await eventually(lambda: gauges(host), lambda g: g["konvo_pubsub_subscribers"] == 4)
                assert during["konvo_websocket_connections"] == 1
                assert during["konvo_websocket_operation_tasks"] == 4
                if leave == "complete":
                    for n in ("0", "1", "2", "runs"):
                        await ws.send({"id": n, "type": "complete"})
                    await eventually(lambda: gauges(host), lambda g: g["konvo_pubsub_subscribers"] == 0)
            after = await eventually(
                lambda: gauges(host),
                lambda g: g["konvo_websocket_connections"] == 0 and g["konvo_websocket_operation_tasks"] == 0,
            )
            assert after["konvo_pubsub_subscribers"] == 0, leave
