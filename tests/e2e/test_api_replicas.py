"""Two real server processes on one store and Redis: a change made through one reaches a
subscriber of the other, in order, and a leaving client leaves nothing running behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceURLs
from tests.e2e.servers import replicas
from tests.support.graphql import GraphQLClient, eventually
from tests.support.ws import GraphQLWebSocket

pytestmark = pytest.mark.e2e

PHONE = "+34611000222"
WATCH = "subscription($p: String!) { contactUpdated(phone: $p) { version tags } }"


async def metrics(base_url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        text = (await http.get("/metrics")).text
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines() if not line.startswith("#"))
    }


async def test_a_mutation_on_one_process_reaches_a_subscriber_on_another(
    services: ServiceURLs, tmp_path: Path
) -> None:
    with replicas(services, tmp_path, count=2) as (writer, reader):
        async with httpx.AsyncClient(base_url=writer.base_url, timeout=30) as http:
            gql = GraphQLClient(http, writer.api_key)
            await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=PHONE)
            await gql('mutation { createTag(name: "seen-elsewhere", kind: SUPPORT) { id } }')

            async with GraphQLWebSocket(f"ws://127.0.0.1:{reader.port}/graphql", reader.api_key) as ws:
                await ws.subscribe("c", WATCH, p=PHONE)
                first = (await ws.next_data("c"))["contactUpdated"]
                for n in range(10):
                    await gql(
                        "mutation($p: String!, $t: String!) { sandboxInbound(phone: $p, text: $t) }",
                        p=PHONE,
                        t=f"m{n}",
                    )
                await gql(
                    'mutation($p: String!) { tagContact(phone: $p, tag: "seen-elsewhere") { id } }', p=PHONE
                )
                last = (await gql("query($p: String!) { contact(phone: $p) { version } }", p=PHONE))[
                    "contact"
                ]
                seen = [first]
                while seen[-1]["version"] < last["version"]:
                    seen.append((await ws.next_data("c"))["contactUpdated"])
                assert [s["version"] for s in seen] == list(range(first["version"], last["version"] + 1))
                assert seen[-1]["tags"] == ["seen-elsewhere"]
                during = await metrics(reader.base_url)
                assert during["konvo_websocket_connections"] == 1
                assert during["konvo_websocket_operation_tasks"] == 1
                assert during["konvo_pubsub_subscribers"] == 1

        after = await eventually(
            lambda: metrics(reader.base_url),
            lambda m: m["konvo_websocket_connections"] == 0 and m["konvo_websocket_operation_tasks"] == 0,
        )
        assert after["konvo_pubsub_subscribers"] == 0
        # The two replicas share the shards, and every turn one sent the other ran.
        on_writer, on_reader = await eventually(
            lambda: asyncio.gather(metrics(writer.base_url), metrics(reader.base_url)),
            lambda both: sum(m["konvo_shards_held"] for m in both) == 64,
        )
        assert on_writer["konvo_replicas_live"] == on_reader["konvo_replicas_live"] == 2
        sent = on_writer["konvo_turns_forwarded_total"] + on_reader["konvo_turns_forwarded_total"]
        assert sent == on_writer["konvo_turns_received_total"] + on_reader["konvo_turns_received_total"]
        assert on_writer["konvo_timers_dropped_total"] == on_reader["konvo_timers_dropped_total"] == 0
        assert writer.interrupt() == 0 and reader.interrupt() == 0
