"""Template review (issue 14): a rejection is the waiting flows' state, updateTemplate edits and
resubmits, an approval activates them; the sandbox never talks of approval.

Meta's side is the loopback Graph API fake; its verdicts arrive as signed
``message_template_status_update`` webhooks POSTed to the real app, as Meta sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.runtime import Runtime
from tests.support.catalog import ensure_catalog
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.whatsapp import FAST_RETRIES
from tests.support.whatsapp_webhooks import VERIFY_TOKEN, WebhookClient, payload, value_of

APP_SECRET = "review-secret"
TEMPLATES = "{ templates { id name language status rejectionReason metaId components } }"
FLOW_STATE = """query($id: ID!) { flow(id: $id) { status activeVersion pendingVersion pendingStatus
  issues { nodeId severity code message } } }"""
PUBLISH = "mutation($id: ID!) { publishFlow(id: $id) { status activeVersion pendingVersion pendingStatus } }"
UPDATE = """mutation($id: ID!, $i: TemplateInput!) { updateTemplate(id: $id, input: $i) {
  id name language category status rejectionReason metaId components } }"""
START = "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }"
REJECTED_BODY = [{"type": "BODY", "text": "{{1}}, compra ya"}]
FIXED_BODY = [{"type": "BODY", "text": "Hola {{1}}, tu pedido está listo."}]


def one_template_flow(name: str, template: str) -> dict[str, Any]:
    return {
        "name": name,
        "start": "hello",
        "nodes": [
            {
                "id": "hello",
                "type": "template",
                "template": template,
                "language": "es",
                "params": {"body": ["Ana"]},
                "next": None,
            }
        ],
    }


@pytest.fixture
async def fake() -> AsyncIterator[GraphApiFake]:
    server = await GraphApiFake().start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake) -> WebhookClient:
    runtime.graph.policy = FAST_RETRIES
    data = await gql(
        "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id } }",
        i={
            "phoneNumberId": fake.phone_number_id,
            "wabaId": fake.waba_id,
            "accessToken": fake.token,
            "appSecret": APP_SECRET,
            "baseUrl": fake.url,
            "verifyToken": VERIFY_TOKEN,
        },
    )
    webhook = WebhookClient(gql.http, data["connectWhatsApp"]["id"], APP_SECRET)
    assert (await webhook.handshake()).status_code == 200  # Meta's GET: the channel then takes events
    return webhook


async def meta_says(
    webhook: WebhookClient, fake: GraphApiFake, name: str, event: str, reason: str | None = None
) -> None:
    """Meta's verdict, in the fake and as its signed webhook (the fixture's shape, our template's ids)."""
    fake.set_template_status(name, "es", event, reason)
    body = payload("template_status_rejected" if event == "REJECTED" else "template_status_approved")
    value = value_of(body)
    value.update(
        event=event,
        message_template_id=int(fake.templates[(name, "es")].id),
        message_template_name=name,
        message_template_language="es",
        reason=reason or "NONE",
    )
    if event != "REJECTED":
        value.pop("rejection_info", None)
    assert (await webhook.post(body)).status_code == 200


async def template_named(gql: GraphQLClient, name: str) -> dict[str, Any]:
    return next(t for t in (await gql(TEMPLATES))["templates"] if t["name"] == name)


async def flow_state(gql: GraphQLClient, flow_id: str) -> dict[str, Any]:
    return (await gql(FLOW_STATE, id=flow_id))["flow"]


async def import_flow(gql: GraphQLClient, definition: dict[str, Any]) -> str:
    await ensure_catalog(gql, definition)
    return (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition))[
        "importFlow"
    ]["id"]


async def test_rejection_holds_waiting_flows_until_the_edited_template_is_approved(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    webhook = await connect(gql, runtime, fake)
    # flow "first" waits for its first version; flow "second" runs v1 and waits with v2
    fake.initial_template_status = "APPROVED"
    second = await import_flow(gql, one_template_flow("Second", "welcome_ok"))
    assert (await gql(PUBLISH, id=second))["publishFlow"]["status"] == "ACTIVE"
    fake.initial_template_status = "PENDING"
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={"name": "order_ready", "language": "es", "category": "UTILITY", "components": REJECTED_BODY},
    )
    first = await import_flow(gql, one_template_flow("First", "order_ready"))
    assert (await gql(PUBLISH, id=first))["publishFlow"] == {
        "status": "PENDING_APPROVAL",
        "activeVersion": None,
        "pendingVersion": 1,
        "pendingStatus": "PENDING_APPROVAL",
    }
    await gql(
        "mutation($id: ID!, $d: JSON!) { updateFlowDraft(id: $id, definition: $d) { id } }",
        id=second,
        d=one_template_flow("Second", "order_ready"),
    )
    assert (await gql(PUBLISH, id=second))["publishFlow"] == {
        "status": "ACTIVE",
        "activeVersion": 1,
        "pendingVersion": 2,
        "pendingStatus": "PENDING_APPROVAL",
    }

    # Meta rejects it: both flows say so, with the reason on the node
    await meta_says(webhook, fake, "order_ready", "REJECTED", "INVALID_FORMAT")
    template = await template_named(gql, "order_ready")
    assert template["status"] == "REJECTED" and "INVALID_FORMAT" in template["rejectionReason"]
    state = await flow_state(gql, first)
    assert (state["status"], state["pendingStatus"], state["activeVersion"]) == (
        "TEMPLATE_REJECTED",
        "TEMPLATE_REJECTED",
        None,
    )
    [issue] = [i for i in state["issues"] if i["code"] == "TEMPLATE_REJECTED"]
    assert (issue["nodeId"], issue["severity"]) == ("hello", "ERROR")
    assert "INVALID_FORMAT" in issue["message"] and "updateTemplate" in issue["message"]
    state = await flow_state(gql, second)
    assert (state["status"], state["activeVersion"], state["pendingVersion"], state["pendingStatus"]) == (
        "ACTIVE",
        1,
        2,
        "TEMPLATE_REJECTED",
    )
    with pytest.raises(GraphQLErrors) as refused:  # it starts nothing
        await gql(START, f=first, p="+34600000401")
    assert "template_rejected" in str(refused.value)
    with pytest.raises(GraphQLErrors) as refused:  # republishing as it is cannot help
        await gql(PUBLISH, id=first)
    assert (
        refused.value.codes == ["INVALID_FLOW"] and refused.value.errors[0]["extensions"]["nodeId"] == "hello"
    )

    # fixed with updateTemplate: resubmitted through Meta's edit endpoint, both wait for review again
    edited = (
        await gql(
            UPDATE,
            id=template["id"],
            i={"name": "order_ready", "language": "es", "category": "UTILITY", "components": FIXED_BODY},
        )
    )["updateTemplate"]
    assert (edited["status"], edited["rejectionReason"], edited["metaId"]) == (
        "PENDING",
        None,
        template["metaId"],
    )
    assert edited["components"] == FIXED_BODY
    edit = fake.requests[-1]
    assert (edit.method, edit.path, edit.status) == ("POST", f"/{fake.version}/{template['metaId']}", 200)
    assert edit.body["components"][0]["text"] == FIXED_BODY[0]["text"]
    assert fake.templates[("order_ready", "es")].status == "PENDING"
    assert (await flow_state(gql, first))["status"] == "PENDING_APPROVAL"
    assert (await flow_state(gql, second))["pendingStatus"] == "PENDING_APPROVAL"

    # approved: both flows run the version that uses it
    await meta_says(webhook, fake, "order_ready", "APPROVED")
    state = await flow_state(gql, first)
    assert (state["status"], state["activeVersion"], state["pendingVersion"], state["pendingStatus"]) == (
        "ACTIVE",
        1,
        None,
        None,
    )
    assert [i for i in state["issues"] if i["severity"] == "ERROR"] == []
    state = await flow_state(gql, second)
    assert (state["status"], state["activeVersion"], state["pendingVersion"]) == ("ACTIVE", 2, None)
    await gql(START, f=first, p="+34600000401")
    [sent] = await eventually(lambda: _sent(fake), lambda found: len(found) == 1)
    assert sent["template"]["name"] == "order_ready" and fake.rejected() == []


async def test_update_template_edits_only_what_meta_would(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    webhook = await connect(gql, runtime, fake)
    created = await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={"name": "draft_one", "language": "es", "category": "UTILITY", "components": REJECTED_BODY},
    )
    draft_id = created["createTemplate"]["id"]
    fixed = {"name": "draft_one", "language": "es", "category": "MARKETING", "components": FIXED_BODY}

    # a draft no flow waits for is only saved (publishing a flow submits it); it may be renamed
    saved = (await gql(UPDATE, id=draft_id, i={**fixed, "name": "draft_renamed"}))["updateTemplate"]
    assert (saved["name"], saved["status"], saved["metaId"], saved["components"]) == (
        "draft_renamed",
        "DRAFT",
        None,
        FIXED_BODY,
    )
    assert fake.requests == []

    # bad components are refused and nothing is lost
    with pytest.raises(GraphQLErrors) as refused:
        await gql(UPDATE, id=draft_id, i={**fixed, "name": "draft_renamed", "components": []})
    assert refused.value.codes == ["INVALID_INPUT"]
    assert (await template_named(gql, "draft_renamed"))["components"] == FIXED_BODY

    # once Meta has it (PENDING), it cannot be edited here, nor renamed when rejected
    flow_id = await import_flow(gql, one_template_flow("Uses it", "draft_renamed"))
    await gql(PUBLISH, id=flow_id)
    pending = await template_named(gql, "draft_renamed")
    assert pending["status"] == "PENDING"
    with pytest.raises(GraphQLErrors) as refused:
        await gql(UPDATE, id=draft_id, i={**fixed, "name": "draft_renamed"})
    assert refused.value.codes == ["INVALID_INPUT"] and "PENDING" in str(refused.value)
    await meta_says(webhook, fake, "draft_renamed", "REJECTED", "TAG_CONTENT_MISMATCH")
    with pytest.raises(GraphQLErrors) as refused:
        await gql(UPDATE, id=draft_id, i={**fixed, "name": "another_name"})
    assert refused.value.codes == ["INVALID_INPUT"] and "name and language" in str(refused.value)

    # ids are scoped: unknown (or another workspace's) templates are NOT_FOUND
    with pytest.raises(GraphQLErrors) as refused:
        await gql(UPDATE, id="tpl_nope", i=fixed)
    assert refused.value.codes == ["NOT_FOUND"]

    # createTemplate with the same name still conflicts, and says what to use instead
    with pytest.raises(GraphQLErrors) as refused:
        await gql(
            "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
            i={**fixed, "name": "draft_renamed"},
        )
    assert refused.value.codes == ["CONFLICT"] and "updateTemplate" in str(refused.value)


async def test_the_sandbox_never_claims_approval_and_connecting_whatsapp_submits(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    flow_id = await import_flow(gql, one_template_flow("Sandbox", "sandbox_hello"))
    assert (await gql(PUBLISH, id=flow_id))["publishFlow"]["status"] == "ACTIVE"  # the sandbox sends drafts
    template = await template_named(gql, "sandbox_hello")
    assert (template["status"], template["metaId"]) == ("DRAFT", None)
    state = await flow_state(gql, flow_id)
    [issue] = [i for i in state["issues"] if i["code"].startswith("TEMPLATE_")]
    assert (issue["code"], issue["severity"], issue["nodeId"]) == (
        "TEMPLATE_SANDBOX_ONLY",
        "WARNING",
        "hello",
    )
    assert "not been submitted to Meta" in issue["message"]
    await gql(START, f=flow_id, p="+34600000501")
    outbox = await gql('{ sandboxOutbox(phone: "+34600000501") { kind template } }')
    assert [m["kind"] for m in outbox["sandboxOutbox"]] == ["template"]
    # editing a sandbox draft saves it; nothing goes to Meta
    await gql(
        UPDATE,
        id=template["id"],
        i={"name": "sandbox_hello", "language": "es", "category": "UTILITY", "components": FIXED_BODY},
    )
    assert fake.requests == []

    # a WhatsApp number is connected: the draft is submitted, the flow waits for Meta's approval
    webhook = await connect(gql, runtime, fake)
    assert [r.path for r in fake.requests] == [f"/{fake.version}/{fake.waba_id}/message_templates"]
    template = await template_named(gql, "sandbox_hello")
    assert template["status"] == "PENDING" and template["metaId"]
    state = await flow_state(gql, flow_id)
    assert (state["status"], state["activeVersion"], state["pendingVersion"]) == ("PENDING_APPROVAL", None, 1)
    assert [i["code"] for i in state["issues"] if i["code"].startswith("TEMPLATE_")] == [
        "TEMPLATE_NOT_APPROVED"
    ]
    with pytest.raises(GraphQLErrors):
        await gql(START, f=flow_id, p="+34600000502")

    await meta_says(webhook, fake, "sandbox_hello", "APPROVED")
    state = await flow_state(gql, flow_id)
    assert (state["status"], state["activeVersion"], state["pendingVersion"]) == ("ACTIVE", 1, None)
    await gql(START, f=flow_id, p="+34600000502")
    [sent] = await eventually(lambda: _sent(fake), lambda found: len(found) == 1)
    assert sent["template"]["name"] == "sandbox_hello"


async def _sent(fake: GraphApiFake) -> list[dict[str, Any]]:
    return fake.sent()
