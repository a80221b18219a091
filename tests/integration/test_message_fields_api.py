"""Issue 17, gap 3: every message in and out matches Meta's and says why it failed, typed.

``providerMessageId`` (the wamid), ``status``, ``errorCode``/``errorTitle``/``errorDetail`` and
``cost`` on the sandbox outbox, the inbox and the messages a run's steps name; run steps as one
GraphQL type per action (``SendFailed.errorCode`` instead of digging in ``detail``), the raw
``detail`` kept, and an action this version does not know read as ``OtherStep``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from server.ids import new_id
from server.runtime import Runtime
from server.web.app import create_app
from tests.integration.conftest import WORKSPACE, publish
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_webhooks import WebhookClient, message_of, payload, status_payload

FIELDS = "id direction providerMessageId status errorCode errorTitle errorDetail channelId at"
COST = "cost { amount currency billable category country pricingType final }"
STEPS = f"""query($p: String!) {{ contact(phone: $p) {{ runs {{ id status steps {{
  __typename node action outcome detail
  ... on ButtonPressed {{ buttonId matchedBy text }}
  ... on Replied {{ text path }}
  ... on Tagged {{ added removed }}
  ... on VariableSet {{ field value }}
  ... on ConditionChecked {{ branch }}
  ... on DelayStarted {{ until }}
  ... on RunStarted {{ flowName }}
  ... on RunEnded {{ reason }}
  ... on MessageStep {{ messageId message {{ {FIELDS} text {COST} }} }}
  ... on SendFailed {{ errorCode errorTitle errorDetail }}
}} }} }} }}"""


async def runs_of(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    return (await gql(STEPS, p=phone))["contact"]["runs"]


async def test_sandbox_outbox_inbox_and_typed_steps(gql: GraphQLClient) -> None:
    flow = {
        "name": "Encuesta",
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "¿Te gustó?",
                "buttons": [
                    {"id": "yes", "title": "Sí", "next": "tag"},
                    {"id": "no", "title": "No", "next": None},
                ],
            },
            {"id": "tag", "type": "tag", "add": ["happy"], "next": "city"},
            {"id": "city", "type": "message", "text": "¿Ciudad?", "on_reply": "save"},
            {
                "id": "save",
                "type": "set_variable",
                "field": "city",
                "value": {"from": "reply"},
                "next": "route",
            },
            {
                "id": "route",
                "type": "condition",
                "branches": [{"name": "Feliz", "segment": {"tag": "happy"}, "next": None}],
                "otherwise": None,
            },
        ],
    }
    flow_id = await publish(gql, flow)
    phone = "+34600170801"
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "sí") }', p=phone)
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "Sevilla") }', p=phone)

    outbox = (await gql(f"query($p: String!) {{ sandboxOutbox(phone: $p) {{ {FIELDS} {COST} }} }}", p=phone))[
        "sandboxOutbox"
    ]
    assert len(outbox) == 2
    for message in outbox:
        assert message["providerMessageId"] == message["id"]  # the sandbox knows it by our id
        assert (message["direction"], message["status"], message["errorCode"]) == ("OUT", "sent", None)
        assert message["cost"] is None and message["channelId"] is None and message["at"]

    inbox = (
        await gql(f"query($p: String!) {{ conversation(phone: $p) {{ messages {{ {FIELDS} }} }} }}", p=phone)
    )["conversation"]["messages"]
    inbound = [m for m in inbox if m["direction"] == "IN"]
    assert [m["status"] for m in inbound] == ["received"] * 3
    assert all(m["providerMessageId"] == m["id"] and m["errorCode"] is None for m in inbound)

    [run] = await runs_of(gql, phone)
    assert run["status"] == "COMPLETED"
    kinds = [(s["__typename"], s["action"]) for s in run["steps"]]
    assert kinds == [
        ("RunStarted", "started"),
        ("MessageSent", "message_sent"),
        ("ButtonPressed", "button"),
        ("Tagged", "tagged"),
        ("MessageSent", "message_sent"),
        ("Replied", "reply"),
        ("VariableSet", "variable_set"),
        ("ConditionChecked", "condition"),
        ("RunEnded", "ended"),
    ]
    steps = run["steps"]
    assert steps[0]["flowName"] == "Encuesta"
    assert (steps[2]["buttonId"], steps[2]["matchedBy"], steps[2]["text"]) == ("yes", "title", "sí")
    assert (steps[3]["added"], steps[3]["removed"]) == (["happy"], [])
    assert (steps[5]["text"], steps[5]["path"]) == ("Sevilla", "on_reply")
    assert (steps[6]["field"], steps[6]["value"]) == ("city", "Sevilla")
    assert steps[7]["branch"] == "Feliz" and steps[8]["reason"] == "completed"
    sent = steps[1]["message"]
    assert steps[1]["messageId"] == sent["id"] == outbox[0]["id"] and sent["text"] == "¿Te gustó?"
    assert steps[1]["detail"] == {"message": sent["id"]}  # the raw detail stays


async def test_an_action_this_version_does_not_know_is_an_other_step(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    flow_id = await publish(
        gql, {"name": "Uno", "start": "t", "nodes": [{"id": "t", "type": "tag", "add": ["x"]}]}
    )
    phone = "+34600170802"
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )
    future = {
        "node": "t",
        "action": "teleported",
        "at": datetime.now(UTC),
        "outcome": "ok",
        "detail": {"to": "Marte"},
    }
    key = await key_of(runtime, WORKSPACE, phone)
    await runtime.database.collection("contacts").update_one(
        {"_id": key.doc_id}, {"$push": {"runs.0.steps": future}}
    )
    [run] = (await gql(STEPS, p=phone))["contact"]["runs"]
    last = run["steps"][-1]
    assert (last["__typename"], last["action"], last["detail"]) == (
        "OtherStep",
        "teleported",
        {"to": "Marte"},
    )


@pytest.fixture
async def webhook(runtime: Runtime, api_key: str, fake: GraphApiFake) -> AsyncIterator[WebhookClient]:
    channel = await connect_fake(runtime, WORKSPACE, fake)  # verified, app secret "app-secret"
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        yield WebhookClient(http, channel["_id"], app_secret="app-secret")


def template_flow(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "start": "promo",
        "nodes": [
            {
                "id": "promo",
                "type": "template",
                "template": "promo_es",
                "params": {"body": ["Ana"]},
                "next": "ask",
            },
            {
                "id": "ask",
                "type": "message",
                "text": "¿Te interesa?",
                "buttons": [{"id": "yes", "title": "Sí", "next": None}],
                "on_failure": "failed",
            },
            {"id": "failed", "type": "tag", "add": ["unreachable"], "next": None},
        ],
    }


async def test_whatsapp_messages_match_meta_and_say_why_they_failed(
    gql: GraphQLClient, webhook: WebhookClient, fake: GraphApiFake
) -> None:
    flow_id = await publish(gql, template_flow("Promo"))
    wa_id = "34600170803"
    phone = "+" + wa_id
    inbound = payload("unsupported")  # a message WhatsApp could not carry: its error is typed too
    message = message_of(inbound)
    message.update(id=f"wamid.{new_id('in')}", timestamp=str(int(datetime.now(UTC).timestamp())))
    message["from"] = wa_id
    inbound["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = wa_id
    assert (await webhook.post(inbound)).status_code == 200
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )

    async def sent_steps() -> list[dict[str, Any]]:
        runs = await runs_of(gql, phone)
        return (
            [s for s in runs[-1]["steps"] if s["__typename"] in ("MessageSent", "TemplateSent")]
            if runs
            else []
        )

    steps = await eventually(sent_steps, lambda found: len(found) == 2 and all(s["message"] for s in found))
    template, question = steps[0]["message"], steps[1]["message"]
    assert [steps[0]["__typename"], steps[1]["__typename"]] == ["TemplateSent", "MessageSent"]
    for sent in (template, question):
        assert sent["providerMessageId"].startswith("wamid.") and sent["providerMessageId"] != sent["id"]
        assert (sent["status"], sent["errorCode"], sent["direction"]) == ("accepted", None, "OUT")
    assert template["cost"]["final"] is False and template["cost"]["currency"]
    assert template["cost"]["category"] == "UTILITY" and template["cost"]["country"] == "ES"
    assert question["cost"] is None  # nothing priced for a free-form message until Meta says

    # Meta reports the template delivered (with its pricing) and the question failed.
    assert (
        await webhook.post(status_payload("status_delivered", template["providerMessageId"]))
    ).status_code == 200
    assert (
        await webhook.post(status_payload("status_failed", question["providerMessageId"]))
    ).status_code == 200

    async def reported() -> list[dict[str, Any]]:
        return (await runs_of(gql, phone))[-1]["steps"]

    steps = await eventually(reported, lambda found: any(s["__typename"] == "SendFailed" for s in found))
    failed = next(s for s in steps if s["__typename"] == "SendFailed")
    assert failed["errorCode"] == "131026" and failed["errorTitle"] == "Message undeliverable"
    assert failed["errorDetail"] == "Message Undeliverable." and failed["messageId"] == question["id"]
    assert failed["message"]["errorCode"] == "131026"
    assert failed["message"]["errorTitle"] == "Message undeliverable"
    assert failed["message"]["errorDetail"] == "Message Undeliverable."
    assert failed["message"]["status"] == "failed"
    delivered = next(s for s in steps if s["__typename"] == "TemplateSent")["message"]
    assert delivered["status"] == "delivered"
    assert delivered["cost"]["final"] is True and delivered["cost"]["billable"] is True
    assert delivered["cost"]["category"] == "MARKETING" and delivered["cost"]["pricingType"] == "regular"
    assert delivered["cost"]["amount"] > 0
    statuses = [s["__typename"] for s in steps if s["action"] == "message_status"]
    assert statuses == ["MessageStatusChanged", "SendFailed"]

    inbox = (
        await gql(f"query($p: String!) {{ conversation(phone: $p) {{ messages {{ {FIELDS} }} }} }}", p=phone)
    )["conversation"]["messages"]
    first = inbox[0]
    assert (first["direction"], first["providerMessageId"], first["status"]) == (
        "IN",
        message["id"],
        "received",
    )
    assert (first["errorCode"], first["errorTitle"]) == ("131051", "Message type unknown")
    assert first["errorDetail"] == "Message type is currently not supported."


async def test_a_send_refused_at_once_has_its_code_title_and_detail(
    gql: GraphQLClient, webhook: WebhookClient, fake: GraphApiFake
) -> None:
    flow = {
        "name": "Rechazo",
        "start": "ask",
        "nodes": [{"id": "ask", "type": "message", "text": "¿Hola?", "next": None}],
    }
    flow_id = await publish(gql, flow)
    phone = "+34600170804"
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    fake.permanent(131047)
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )

    async def failed() -> list[dict[str, Any]]:
        return [s for s in (await runs_of(gql, phone))[-1]["steps"] if s["__typename"] == "SendFailed"]

    [step] = await eventually(failed, lambda found: len(found) == 1)
    assert step["errorCode"] == "131047"
    assert (
        step["errorTitle"]
        == "more than 24 hours passed since the customer last wrote: only a template can be sent"
    )
    assert step["errorDetail"].startswith("WhatsApp API error 131047")
    message = step["message"]
    assert (message["status"], message["errorCode"], message["providerMessageId"]) == (
        "failed",
        "131047",
        None,
    )
    assert message["errorTitle"] == step["errorTitle"] and message["errorDetail"] == step["errorDetail"]
