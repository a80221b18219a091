"""Template review with Meta: publish submits, the flow waits, status changes activate it or explain why not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.operations.templates import apply_template_status
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE
from tests.support.catalog import ensure_catalog
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.whatsapp import FAST_RETRIES

FLOW = {
    "name": "Welcome back",
    "start": "hello",
    "nodes": [
        {
            "id": "hello",
            "type": "template",
            "template": "welcome_back",
            "language": "es",
            "params": {"body": ["Ana"]},
            "next": None,
        }
    ],
}
TEMPLATES = "{ templates { id name status rejectionReason metaId } }"
FLOW_STATE = """query($id: ID!) { flow(id: $id) { status activeVersion pendingVersion
  issues { nodeId code message } } }"""


@pytest.fixture
async def fake() -> AsyncIterator[GraphApiFake]:
    server = await GraphApiFake().start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake) -> dict[str, Any]:
    runtime.graph.policy = FAST_RETRIES
    data = await gql(
        """mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) {
             id webhookUrl phoneNumberId wabaId throughputPerSecond verifyToken } }""",
        i={
            "phoneNumberId": fake.phone_number_id,
            "wabaId": fake.waba_id,
            "accessToken": fake.token,
            "appSecret": "s3cret",
            "baseUrl": fake.url,
            "throughputPerSecond": 250,
        },
    )
    return data["connectWhatsApp"]


async def test_publish_waits_for_approval_and_shows_rejections(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    channel = await connect(gql, runtime, fake)
    assert channel["webhookUrl"].endswith(f"/webhooks/whatsapp/{channel['id']}")
    assert channel["throughputPerSecond"] == 250 and channel["verifyToken"]
    listed = await gql("{ whatsappChannels { id phoneNumberId verifyToken } }")
    assert listed["whatsappChannels"] == [
        {"id": channel["id"], "phoneNumberId": fake.phone_number_id, "verifyToken": None}
    ]

    await ensure_catalog(gql, FLOW)
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=FLOW))["importFlow"][
        "id"
    ]
    published = await gql(
        "mutation($id: ID!) { publishFlow(id: $id) { status activeVersion pendingVersion } }", id=flow_id
    )
    assert published["publishFlow"] == {
        "status": "PENDING_APPROVAL",
        "activeVersion": None,
        "pendingVersion": 1,
    }
    [template] = (await gql(TEMPLATES))["templates"]
    assert template["status"] == "PENDING" and template["metaId"]
    submitted = fake.templates[("welcome_back", "es")]
    assert submitted.category == "UTILITY" and submitted.components[0]["example"] == {
        "body_text": [["example 1"]]
    }
    with pytest.raises(GraphQLErrors) as refused:  # a pending flow starts nothing
        await gql('mutation($f: ID!) { startFlow(flowId: $f, phone: "+34600000201") { id } }', f=flow_id)
    assert refused.value.errors

    # Meta rejects it: the reason is on the template and on the flow's node
    fake.set_template_status("welcome_back", "es", "REJECTED", "INVALID_FORMAT")
    await apply_template_status(
        runtime,
        WORKSPACE,
        meta_id=template["metaId"],
        name="welcome_back",
        language="es",
        status="REJECTED",
        reason="INVALID_FORMAT",
    )
    [template] = (await gql(TEMPLATES))["templates"]
    assert template["status"] == "REJECTED" and template["rejectionReason"] == "INVALID_FORMAT"
    state = (await gql(FLOW_STATE, id=flow_id))["flow"]
    assert state["status"] == "TEMPLATE_REJECTED"  # issue 14: the rejection is the flow's state
    [issue] = [i for i in state["issues"] if i["code"] == "TEMPLATE_REJECTED"]
    assert issue["nodeId"] == "hello" and "INVALID_FORMAT" in issue["message"]

    # resubmitted as it is (Meta's edit endpoint; e.g. after an appeal), then approved: active
    resubmitted = await gql(
        "mutation($id: ID!) { submitTemplate(id: $id) { status rejectionReason } }", id=template["id"]
    )
    assert resubmitted["submitTemplate"] == {"status": "PENDING", "rejectionReason": None}
    assert fake.requests[-1].path.endswith("/" + template["metaId"])
    assert (await gql(FLOW_STATE, id=flow_id))["flow"]["status"] == "PENDING_APPROVAL"
    fake.set_template_status("welcome_back", "es", "APPROVED")
    await apply_template_status(
        runtime,
        WORKSPACE,
        meta_id=template["metaId"],
        name="welcome_back",
        language="es",
        status="APPROVED",
        reason=None,
    )
    state = (await gql(FLOW_STATE, id=flow_id))["flow"]
    assert (state["status"], state["activeVersion"], state["pendingVersion"]) == ("ACTIVE", 1, None)
    await gql('mutation($f: ID!) { startFlow(flowId: $f, phone: "+34600000201") { id } }', f=flow_id)
    sent = await eventually(lambda: _sent(fake), lambda found: len(found) == 1)
    assert sent[0]["template"]["name"] == "welcome_back"


async def _sent(fake: GraphApiFake) -> list[dict[str, Any]]:
    return fake.sent()


async def test_republish_keeps_the_active_version_until_approval(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    fake.initial_template_status = "APPROVED"
    await connect(gql, runtime, fake)
    await ensure_catalog(gql, FLOW)
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=FLOW))["importFlow"][
        "id"
    ]
    await gql("mutation($id: ID!) { publishFlow(id: $id) { status } }", id=flow_id)

    fake.initial_template_status = "PENDING"
    second = {
        **FLOW,
        "nodes": [{**FLOW["nodes"][0], "template": "welcome_again", "params": {"body": ["Ana"]}}],
    }
    await ensure_catalog(gql, second)
    await gql(
        "mutation($id: ID!, $d: JSON!) { updateFlowDraft(id: $id, definition: $d) { id } }",
        id=flow_id,
        d=second,
    )
    published = await gql(
        "mutation($id: ID!) { publishFlow(id: $id) { status activeVersion pendingVersion } }", id=flow_id
    )
    assert published["publishFlow"] == {"status": "ACTIVE", "activeVersion": 1, "pendingVersion": 2}

    fake.set_template_status("welcome_again", "es", "APPROVED")
    synced = await gql("mutation { syncTemplates { name status } }")
    assert {t["name"]: t["status"] for t in synced["syncTemplates"]} == {
        "welcome_back": "APPROVED",
        "welcome_again": "APPROVED",
    }
    state = (await gql(FLOW_STATE, id=flow_id))["flow"]
    assert (state["activeVersion"], state["pendingVersion"]) == (2, None)


async def test_sync_imports_templates_made_elsewhere_and_follows_pauses(
    gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake
) -> None:
    await connect(gql, runtime, fake)
    fake.add_template("made_in_manager", "en_US", "MARKETING", [{"type": "BODY", "text": "Sale!"}])
    fake.set_template_status("made_in_manager", "en_US", "PAUSED")
    synced = (await gql("mutation { syncTemplates { name language status metaId } }"))["syncTemplates"]
    assert synced == [
        {
            "name": "made_in_manager",
            "language": "en_US",
            "status": "PAUSED",
            "metaId": fake.templates[("made_in_manager", "en_US")].id,
        }
    ]


async def test_sandbox_workspace_publishes_at_once(gql: GraphQLClient, fake: GraphApiFake) -> None:
    await ensure_catalog(gql, FLOW)
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=FLOW))["importFlow"][
        "id"
    ]
    published = await gql("mutation($id: ID!) { publishFlow(id: $id) { status } }", id=flow_id)
    assert published["publishFlow"]["status"] == "ACTIVE" and fake.requests == []
    with pytest.raises(GraphQLErrors) as refused:
        await gql("mutation { syncTemplates { name } }")
    assert refused.value.codes == ["INVALID_INPUT"]
