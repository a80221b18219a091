"""The typing indicator: a flow about to answer a customer's WhatsApp message first marks it read
with ``typing_indicator`` (once per message, never for API starts), switchable per workspace."""

from __future__ import annotations

from typing import Any

from server.runtime import Runtime
from tests.integration.conftest import publish
from tests.integration.test_whatsapp_webhook import (  # noqa: F401 - fixtures
    CUSTOMER,
    channel_fixture,
    contact,
    fresh,
    graph_fixture,
    settled,
    webhook_fixture,
)
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp_webhooks import WebhookClient, message_of

ECHO = {
    "name": "Echo",
    "start": "echo",
    "nodes": [{"id": "echo", "type": "message", "text": "Recibido", "on_reply": "echo"}],
}


def answers(graph: GraphApiFake) -> list[tuple[str, Any]]:
    """What reached /messages in order: ("read", wamid) for receipts, ("text", body) for messages."""
    found: list[tuple[str, Any]] = []
    for request in graph.requests:
        if request.status != 200 or not request.path.endswith("/messages"):
            continue
        body = request.body
        if "status" in body:
            found.append(("read", (body["message_id"], body.get("typing_indicator"))))
        else:
            found.append(("text", body["text"]["body"]))
    return found


async def test_the_answer_to_a_message_comes_after_one_typing_indicator_for_it(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient, graph: GraphApiFake
) -> None:
    assert (await webhook.post(fresh("text"))).status_code == 200  # opens the window, starts nothing
    await eventually(lambda: contact(runtime), lambda c: c is not None and c.get("last_inbound_at"))
    flow_id = await publish(gql, ECHO)
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=CUSTOMER
    )
    await eventually(lambda: _answers(graph), lambda found: found == [("text", "Recibido")])  # no receipt

    body = fresh("text")
    wamid = message_of(body)["id"]
    assert (await webhook.post(body)).status_code == 200
    expected = [("text", "Recibido"), ("read", (wamid, {"type": "text"})), ("text", "Recibido")]
    await eventually(lambda: _answers(graph), lambda found: found == expected)
    assert graph.rejected() == []

    assert (await webhook.post(body)).status_code == 200  # Meta's retry of the same message
    await settled(runtime)
    assert answers(graph) == expected  # applied once: one receipt, one answer

    off = await gql("mutation { updateSendingSettings(typingIndicator: false) { typingIndicator } }")
    assert off["updateSendingSettings"]["typingIndicator"] is False
    assert (await webhook.post(fresh("text"))).status_code == 200
    await eventually(lambda: _answers(graph), lambda found: found == [*expected, ("text", "Recibido")])


async def _answers(graph: GraphApiFake) -> list[tuple[str, Any]]:
    return answers(graph)
