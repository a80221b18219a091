"""Statuses of our messages from Meta's webhook: out of order, duplicated, early, failed; and template news."""

from __future__ import annotations

from typing import Any

import pytest

from server.ids import new_id
from server.runtime import Runtime
from server.store.statuses import report_id
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_whatsapp_webhook import (
    answers_flow,
    channel_fixture,  # noqa: F401  (fixtures shared with the messages tests)
    contact,
    fresh,
    graph_fixture,  # noqa: F401
    open_window_and_start,
    settled,
    the_run,
    webhook_fixture,  # noqa: F401
)
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp_webhooks import CUSTOMER, WebhookClient, payload, status_payload, value_of

PRICING = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}


async def sent_message(runtime: Runtime, run_id: str) -> tuple[dict[str, Any], str]:
    """The outbound message the run's first node sent, once Meta (the fake) accepted it, and its wamid."""
    document = await eventually(
        lambda: contact(runtime),
        lambda c: c is not None and any(s["action"] == "message_sent" for s in the_run(c, run_id)["steps"]),
    )
    assert document is not None
    message_id = next(s for s in the_run(document, run_id)["steps"] if s["action"] == "message_sent")[
        "detail"
    ]["message"]
    message = await eventually(
        lambda: runtime.messages.get(message_id), lambda m: m is not None and m.get("provider_id")
    )
    assert message is not None and message["channel"] == "whatsapp"  # sent through the Graph API fake
    assert message["provider_id"].startswith("wamid.")
    return message, message["provider_id"]


def status_steps(document: dict[str, Any], run_id: str) -> list[tuple[str, str]]:
    return [
        (s["node"], s["outcome"])
        for s in the_run(document, run_id)["steps"]
        if s["action"] == "message_status"
    ]


async def test_statuses_out_of_order_keep_the_furthest_every_time_and_the_pricing(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient
) -> None:
    run_id = await open_window_and_start(runtime, gql, webhook)
    message, wamid = await sent_message(runtime, run_id)
    for name in ("status_read", "status_delivered", "status_sent", "status_read"):
        assert (await webhook.post(status_payload(name, wamid))).status_code == 200, name
    stored = await eventually(
        lambda: runtime.messages.get(message["_id"]),
        lambda m: m is not None and len(m.get("statuses", {})) == 3,
    )
    assert stored is not None
    assert stored["status"] == "read"
    assert set(stored["statuses"]) == {"sent", "delivered", "read"}
    assert stored["statuses"]["read"] > stored["statuses"]["sent"]  # each status keeps Meta's own time
    assert stored["pricing"] == PRICING
    assert stored["conversation"]["origin"]["type"] == "marketing"
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and len(status_steps(c, run_id)) == 3
    )
    document = await settled(runtime)
    # one step per distinct status, in arrival order; the repeated "read" was applied once
    assert status_steps(document, run_id) == [("ask", "read"), ("ask", "delivered"), ("ask", "sent")]
    run = the_run(document, run_id)
    assert (run["status"], run["node"]) == ("waiting", "ask")
    assert len(document["runs"]) == 1  # statuses never start flows
    await eventually(
        lambda: runtime.message_statuses.get(report_id(WORKSPACE, wamid, "sent")),
        lambda s: s is not None and s["state"] == "applied",
    )


async def test_failed_follows_on_failure_while_the_run_is_at_the_node(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient
) -> None:
    definition = answers_flow("Fails")
    definition["nodes"][0]["on_failure"] = "t_failed"
    definition["nodes"].append({"id": "t_failed", "type": "tag", "add": ["undeliverable"], "next": None})
    assert (await webhook.post(fresh("text"))).status_code == 200
    await eventually(
        lambda: contact(runtime), lambda c: c is not None and c.get("last_inbound_at") is not None
    )
    flow_id = await publish(gql, definition)
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=CUSTOMER
    )
    run_id = data["startFlow"]["id"]
    message, wamid = await sent_message(runtime, run_id)
    assert (await webhook.post(status_payload("status_sent", wamid))).status_code == 200
    assert (await webhook.post(status_payload("status_failed", wamid))).status_code == 200
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and the_run(c, run_id)["status"] == "completed"
    )
    assert "undeliverable" in document["tags"]
    failed = next(s for s in the_run(document, run_id)["steps"] if s["outcome"] == "failed")
    assert (failed["node"], failed["action"]) == ("ask", "message_status")
    assert failed["detail"]["error_code"] == "131026"
    assert failed["detail"]["error"] == "Message Undeliverable."
    assert not document.get("timers")
    # failed is final: a late "read" is kept as a time but does not replace it
    assert (await webhook.post(status_payload("status_read", wamid))).status_code == 200
    stored = await eventually(
        lambda: runtime.messages.get(message["_id"]),
        lambda m: m is not None and "read" in m.get("statuses", {}),
    )
    assert stored is not None
    assert (stored["status"], stored["error_code"]) == ("failed", "131026")


async def test_failed_without_a_failure_path_fails_the_run_with_the_code(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient
) -> None:
    """Issue 14: the run no longer waits for an answer to a message the customer never got."""
    run_id = await open_window_and_start(runtime, gql, webhook)
    _, wamid = await sent_message(runtime, run_id)
    assert (await webhook.post(status_payload("status_failed", wamid))).status_code == 200
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and the_run(c, run_id)["status"] == "failed"
    )
    assert status_steps(document, run_id) == [("ask", "failed")]
    run = the_run(document, run_id)
    assert (run["node"], run["end_reason"]) == ("ask", "SEND_FAILED:131026")
    assert not document.get("timers")


async def test_a_status_before_its_message_is_known_is_parked_then_applied(
    runtime: Runtime, webhook: WebhookClient
) -> None:
    early = f"wamid.{new_id('early')}"
    late = f"wamid.{new_id('late')}"
    for wamid in (early, late):
        assert (await webhook.post(status_payload("status_delivered", wamid))).status_code == 200
        parked = await runtime.message_statuses.get(report_id(WORKSPACE, wamid, "delivered"))
        assert parked is not None and parked["state"] == "parked"
        assert parked["pricing"] == PRICING
    for wamid in (early, late):  # the send response is recorded only now
        await runtime.messages.record_outbound(
            {
                "_id": new_id("msg"),
                "workspace_id": WORKSPACE,
                "phone": CUSTOMER,
                "channel": "whatsapp",
                "provider_id": wamid,
                "status": "accepted",
                "at": runtime.clock.now(),
            }
        )
    assert await runtime.ledger.provider_id_known(WORKSPACE, early) == 1  # what a send does next
    await runtime.recover_now()  # what picks up the rest
    for wamid in (early, late):
        message = await runtime.messages.find_by_provider_id(WORKSPACE, wamid)
        assert message is not None
        assert (message["status"], message["pricing"]) == ("delivered", PRICING)
        await eventually(
            lambda w=wamid: runtime.message_statuses.get(report_id(WORKSPACE, w, "delivered")),
            lambda s: s is not None and s["state"] == "applied",
        )


async def test_a_status_from_a_number_not_ours_is_ignored(runtime: Runtime, webhook: WebhookClient) -> None:
    body = status_payload("status_sent", "wamid.other")
    value_of(body)["metadata"]["phone_number_id"] = "999999999999999"
    assert (await webhook.post(body)).status_code == 200
    assert await runtime.message_statuses.get(report_id(WORKSPACE, "wamid.other", "sent")) is None


# --- templates ------------------------------------------------------------------------------


TEMPLATE_QUERY = "{ templates { name language status rejectionReason } }"


async def _create_template(gql: GraphQLClient) -> None:
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={
            "name": "cart_reminder",
            "language": "es",
            "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Hola {{1}}, tu carrito te espera"}],
        },
    )


async def _template(gql: GraphQLClient) -> dict[str, Any]:
    data = await gql(TEMPLATE_QUERY)
    return next(t for t in data["templates"] if (t["name"], t["language"]) == ("cart_reminder", "es"))


@pytest.mark.parametrize(
    ("fixture_name", "status", "reason"),
    [
        ("template_status_approved", "APPROVED", None),
        ("template_status_rejected", "REJECTED", "INVALID_FORMAT"),
        ("template_status_paused", "PAUSED", None),
        ("template_status_disabled", "DISABLED", None),
    ],
)
async def test_template_status_updates_reach_the_template(
    gql: GraphQLClient, webhook: WebhookClient, fixture_name: str, status: str, reason: str | None
) -> None:
    await _create_template(gql)
    assert (await webhook.post(payload(fixture_name))).status_code == 200
    template = await eventually(lambda: _template(gql), lambda t: t["status"] == status)
    if reason is None:
        assert not template["rejectionReason"]
    else:
        assert reason in template["rejectionReason"]


@pytest.mark.parametrize(
    "event",
    [
        "PENDING",
        "FLAGGED",
        "IN_APPEAL",
        "PENDING_DELETION",
        "DELETED",
        "REINSTATED",
        "LIMIT_EXCEEDED",
        "ARCHIVED",
        "LOCKED",
        "UNARCHIVED",
    ],
)
async def test_every_template_event_meta_sends_is_accepted(
    gql: GraphQLClient, webhook: WebhookClient, event: str
) -> None:
    await _create_template(gql)
    body = payload("template_status_approved")
    value_of(body)["event"] = event
    assert (await webhook.post(body)).status_code == 200


@pytest.mark.parametrize("fixture_name", ["template_quality_update", "template_category_update"])
async def test_template_quality_and_category_news_is_accepted(
    webhook: WebhookClient, fixture_name: str
) -> None:
    assert (await webhook.post(payload(fixture_name))).status_code == 200


async def test_a_permanent_send_failure_ends_the_message_and_follows_on_failure(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient, graph: GraphApiFake
) -> None:
    """Meta refuses the send itself (131047: the 24-hour window is closed on Meta's side)."""
    definition = answers_flow("Refused")
    definition["nodes"][0]["on_failure"] = "t_failed"
    definition["nodes"].append({"id": "t_failed", "type": "tag", "add": ["undeliverable"], "next": None})
    assert (await webhook.post(fresh("text"))).status_code == 200
    await eventually(
        lambda: contact(runtime), lambda c: c is not None and c.get("last_inbound_at") is not None
    )
    flow_id = await publish(gql, definition)
    graph.permanent(131047)
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=CUSTOMER
    )
    run_id = data["startFlow"]["id"]
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and the_run(c, run_id)["status"] == "completed"
    )
    assert "undeliverable" in document["tags"]
    assert not document.get("outbox")
    failed = next(s for s in the_run(document, run_id)["steps"] if s["action"] == "message_status")
    assert (failed["node"], failed["outcome"], failed["detail"]["error_code"]) == ("ask", "failed", "131047")
    message_id = next(s for s in the_run(document, run_id)["steps"] if s["action"] == "message_sent")[
        "detail"
    ]["message"]
    stored = await runtime.messages.get(message_id)
    assert stored is not None
    assert (stored["direction"], stored["status"], stored["error_code"]) == ("out", "failed", "131047")
    assert stored["error"]
