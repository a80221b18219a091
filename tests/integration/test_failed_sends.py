"""A send Meta refuses never leaves its run waiting for an answer (the Graph API fake on loopback).

Refused at send time (error codes, a paused template) or reported failed later by a status
webhook: the run follows the node's ``on_failure``, or fails with ``SEND_FAILED:<code>``, visibly
in ``run.steps`` and on ``runUpdated``.
"""

from __future__ import annotations

from typing import Any

import pytest

from server.actors.message_statuses import StatusReport
from server.operations.templates import apply_template_status
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import run_of
from tests.integration.test_whatsapp_outbound import say, start, wait_sent
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.live import live_server
from tests.support.whatsapp import connect_fake
from tests.support.ws import GraphQLWebSocket

RUN_STEPS = "{ id status endReason node steps { node action outcome detail } }"


@pytest.fixture
async def channel(runtime: Runtime, api_key: str, fake: GraphApiFake) -> dict[str, Any]:
    return await connect_fake(runtime, WORKSPACE, fake)


def asking(name: str, **extra: Any) -> dict[str, Any]:
    """A question with buttons and a no-reply path: exactly what used to keep waiting after a refusal."""
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "¿Te ayudamos?",
                "buttons": [
                    {"id": "yes", "title": "Sí", "next": None},
                    {"id": "no", "title": "No", "next": None},
                ],
                "no_reply": {"after": "1h", "next": None},
                **extra,
            },
            {"id": "unreachable", "type": "tag", "add": ["unreachable"], "next": None},
        ],
    }


async def the_run(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    found = await gql(f"query($p: String!) {{ contact(phone: $p) {{ runs {RUN_STEPS} }} }}", p=phone)
    return found["contact"]["runs"][-1]


async def settled(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return await eventually(lambda: the_run(gql, phone), lambda r: r["status"] not in ("WAITING", "ACTIVE"))


async def conversation(runtime: Runtime, phone: str) -> list[dict[str, Any]]:
    return await runtime.messages.conversation(await key_of(runtime, WORKSPACE, phone), 10)


async def no_timers(runtime: Runtime, phone: str) -> bool:
    document = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
    return document is not None and document.get("timers") == []


async def test_a_refused_send_fails_the_run_with_its_code_live_on_run_updated(
    gql: GraphQLClient, runtime: Runtime, api_key: str, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await publish(gql, asking("Refused"))
    phone = "+34600300001"
    await say(gql, phone, "hola")
    async with (
        live_server(runtime) as (host, _),
        GraphQLWebSocket(f"ws://{host}/graphql", api_key) as ws,
    ):
        await ws.subscribe(
            "runs", f"subscription($f: ID) {{ runUpdated(flowId: $f) {RUN_STEPS} }}", f=flow_id
        )
        await eventually(lambda: _subscribers(runtime), lambda n: n >= 1)
        fake.permanent(131026)  # "Receiver is incapable of receiving this message"
        await start(gql, flow_id, phone)
        while True:
            update = (await ws.next_data("runs"))["runUpdated"]
            if update["status"] != "WAITING":
                break
    assert (update["status"], update["endReason"]) == ("FAILED", "SEND_FAILED:131026")
    run = await the_run(gql, phone)
    assert (run["status"], run["endReason"]) == ("FAILED", "SEND_FAILED:131026")
    failed = [s for s in run["steps"] if s["action"] == "message_status"]
    assert failed[0]["outcome"] == "failed" and failed[0]["detail"]["error_code"] == "131026"
    assert run["steps"][-1]["action"] == "ended"
    assert await no_timers(runtime, phone)  # nothing will nudge a customer who got nothing


async def _subscribers(runtime: Runtime) -> int:
    return runtime.pubsub.subscriber_count


async def test_a_refused_send_follows_on_failure(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await publish(gql, asking("Refused with a path", on_failure="unreachable"))
    phone = "+34600300002"
    await say(gql, phone, "hola")
    fake.permanent(131047)  # more than 24 hours since the customer wrote, as Meta sees it
    await start(gql, flow_id, phone)
    run = await settled(gql, phone)
    assert run["status"] == "COMPLETED" and [s["node"] for s in run["steps"]][-2:] == ["unreachable", None]
    contact = await gql("query($p: String!) { contact(phone: $p) { tags } }", p=phone)
    assert contact["contact"]["tags"] == ["unreachable"]
    assert await no_timers(runtime, phone)


async def test_a_paused_template_fails_the_run_that_waits_on_it(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = {
        "name": "Paused offer",
        "start": "offer",
        "nodes": [
            {
                "id": "offer",
                "type": "template",
                "template": "paused_offer",
                "language": "es",
                "buttons": [{"id": "buy", "next": None}],
                "no_reply": {"after": "1d", "next": None},
            }
        ],
    }
    flow_id = await publish(gql, flow)
    await apply_template_status(
        runtime, WORKSPACE, meta_id=None, name="paused_offer", language="es", status="PAUSED", reason=None
    )
    phone = "+34600300003"
    await start(gql, flow_id, phone)
    run = await settled(gql, phone)
    assert (run["status"], run["endReason"]) == ("FAILED", "SEND_FAILED:TEMPLATE_PAUSED")
    assert fake.sent() == []


async def test_a_failed_status_webhook_fails_the_waiting_run(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    """Meta accepted the send, then reported it failed (e.g. 131026 undeliverable)."""
    flow_id = await publish(gql, asking("Failed later"))
    phone = "+34600300004"
    await say(gql, phone, "hola")
    await start(gql, flow_id, phone)
    await wait_sent(fake, phone, 1)
    message = await eventually(
        lambda: conversation(runtime, phone),
        lambda found: any(m.get("provider_id") for m in found if m.get("direction") == "out"),
    )
    provider_id = next(m["provider_id"] for m in message if m.get("direction") == "out")
    assert (await run_of(gql, (await the_run(gql, phone))["id"]))["status"] == "WAITING"
    report = StatusReport(
        provider_id, "failed", runtime.clock.now(), error_code="131026", error="Message undeliverable"
    )
    assert await runtime.ledger.report(WORKSPACE, channel["_id"], report) == "applied"
    run = await settled(gql, phone)
    assert (run["status"], run["endReason"]) == ("FAILED", "SEND_FAILED:131026")
    assert await no_timers(runtime, phone)
