"""``konvo serve`` as a real process: embedded services, HTTP, a WebSocket subscription, clean stop."""

from __future__ import annotations

import stat

import httpx
import pytest

from server.dev.embedded import pid_alive
from tests.e2e.conftest import ServedProcess
from tests.support.catalog import ensure_catalog
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient
from tests.support.ws import GraphQLWebSocket

pytestmark = pytest.mark.e2e


async def test_serve_runs_a_flow_and_streams_contact_updates(served: ServedProcess) -> None:
    port = served.port
    banner = served.banner
    children = served.children
    assert len(children) == 2 and all(pid_alive(pid) for pid in children)
    # The embedded setup keeps the key sealing stored secrets in its data dir, readable by us alone.
    assert stat.S_IMODE((served.data_dir / "secret.key").stat().st_mode) == 0o600
    assert banner["GraphQL"] == f"http://127.0.0.1:{port}/graphql"
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        health = (await http.get("/healthz")).json()
        assert health == {"store": "ok", "redis": "ok", "ok": True}
        gql = GraphQLClient(http, banner["API key"])
        demo = (await gql("{ flows { name status } }"))["flows"]
        assert {f["name"]: f["status"] for f in demo} == {
            "Abandoned cart": "ACTIVE",
            "Opt-in collection": "ACTIVE",
            "Order update with feedback": "ACTIVE",
            "VIP routing": "ACTIVE",
            "Welcome": "ACTIVE",
        }
        await ensure_catalog(gql, skeleton_flow(no_reply_after="1h"))
        flow_id = (
            await gql(
                "mutation($d: JSON!) { importFlow(definition: $d) { id } }",
                d=skeleton_flow(no_reply_after="1h"),
            )
        )["importFlow"]["id"]
        await gql("mutation($id: ID!) { publishFlow(id: $id) { id } }", id=flow_id)
        # The demo's inbound triggers would answer the message below; this test starts its own flow.
        for trigger in (await gql("{ inboundTriggers { id } }"))["inboundTriggers"]:
            await gql("mutation($id: ID!) { deleteInboundTrigger(id: $id) }", id=trigger["id"])
        phone = "+34611222333"
        await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)

        url = f"ws://127.0.0.1:{port}/graphql"
        async with GraphQLWebSocket(url, banner["API key"]) as ws:
            await ws.subscribe(
                "c1",
                "subscription($p: String!) { contactUpdated(phone: $p) "
                "{ phone tags version runs { status node } } }",
                p=phone,
            )
            snapshot = (await ws.next_data("c1"))["contactUpdated"]
            assert snapshot["phone"] == phone and snapshot["runs"] == []

            await gql(
                "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }",
                f=flow_id,
                p=phone,
            )
            waiting = (await ws.next_data("c1"))["contactUpdated"]
            assert waiting["runs"] == [{"status": "WAITING", "node": "ask"}]

            await gql('mutation($p: String!) { sandboxInbound(phone: $p, buttonId: "yes") }', p=phone)
            done = (await ws.next_data("c1"))["contactUpdated"]
            assert done["tags"] == ["interested"]
            assert done["runs"] == [{"status": "COMPLETED", "node": None}]
            assert done["version"] > waiting["version"] > snapshot["version"]
    assert served.interrupt() == 0
    assert [pid for pid in children if pid_alive(pid)] == []
