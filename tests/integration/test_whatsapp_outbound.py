"""Flows sending through the WhatsApp channel to the loopback Graph API fake (strict about Meta's format)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.channels.base import SendResult
from server.ids import new_id
from server.operations.templates import apply_template_status
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp import FAST_RETRIES, connect_fake

STEPS = """query($p: String!) { contact(phone: $p) {
  runs { status node endReason steps { node action outcome detail } } } }"""


@pytest.fixture
async def channel(runtime: Runtime, api_key: str, fake: GraphApiFake) -> dict[str, Any]:
    return await connect_fake(runtime, WORKSPACE, fake)


async def say(gql: GraphQLClient, phone: str, text: str | None = None, button: str | None = None) -> None:
    await gql(
        "mutation($p: String!, $t: String, $b: String) { sandboxInbound(phone: $p, text: $t, buttonId: $b) }",
        p=phone,
        t=text,
        b=button,
    )


async def start(gql: GraphQLClient, flow_id: str, phone: str) -> None:
    await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )


def sent_to(fake: GraphApiFake, phone: str) -> list[dict[str, Any]]:
    return [b for b in fake.sent() if b["to"] == phone.lstrip("+")]


async def wait_sent(fake: GraphApiFake, phone: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        return sent_to(fake, phone)

    return await eventually(probe, lambda found: len(found) >= count)


async def outbound(runtime: Runtime, phone: str) -> list[dict[str, Any]]:
    found = await runtime.messages.conversation(await key_of(runtime, WORKSPACE, phone), 50)
    return [m for m in found if m.get("direction") == "out"]


def chain(name: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    for node, following in zip(nodes, [*nodes[1:], None], strict=True):
        node.setdefault("next", following["id"] if following else None)
    return {"name": name, "start": nodes[0]["id"], "nodes": nodes}


async def test_text_media_and_buttons_reach_meta_in_order(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = chain(
        "Simple messages",
        [
            {"id": "hi", "type": "message", "text": "Hola, mira https://shop.example"},
            {
                "id": "img",
                "type": "message",
                "media": {"kind": "image", "url": "https://cdn.example/a.jpg", "caption": "Nuevo"},
            },
            {"id": "vid", "type": "message", "media": {"kind": "video", "url": "https://cdn.example/a.mp4"}},
            {"id": "aud", "type": "message", "media": {"kind": "audio", "url": "https://cdn.example/a.ogg"}},
            {
                "id": "doc",
                "type": "message",
                "media": {"kind": "document", "url": "https://cdn.example/f.pdf", "filename": "factura.pdf"},
            },
            {
                "id": "ask",
                "type": "message",
                "text": "¿Te gustó?",
                "buttons": [
                    {"id": "yes", "title": "Sí", "next": None},
                    {"id": "no", "title": "No", "next": None},
                ],
            },
        ],
    )
    flow_id = await publish(gql, flow)
    phone = "+34600000101"
    await say(gql, phone, "hola")  # opens the customer-service window
    await start(gql, flow_id, phone)
    bodies = await wait_sent(fake, phone, 6)
    assert [b["type"] for b in bodies] == ["text", "image", "video", "audio", "document", "interactive"]
    assert bodies[0]["text"] == {"body": "Hola, mira https://shop.example", "preview_url": True}
    assert bodies[1]["image"] == {"link": "https://cdn.example/a.jpg", "caption": "Nuevo"}
    assert bodies[4]["document"]["filename"] == "factura.pdf"
    assert [b["reply"]["id"] for b in bodies[5]["interactive"]["action"]["buttons"]] == ["yes", "no"]
    assert fake.rejected() == []
    assert all(r.headers["authorization"] == "Bearer test-token" for r in fake.requests)

    records = await eventually(lambda: outbound(runtime, phone), lambda found: len(found) == 6)
    assert {r["channel"] for r in records} == {"whatsapp"}
    assert all(r["provider_id"].startswith("wamid.") and r["status"] == "accepted" for r in records)

    await say(gql, phone, button="yes")  # the reply maps back to the node's button
    state = await gql(STEPS, p=phone)
    assert state["contact"]["runs"][0]["status"] == "COMPLETED"


async def test_template_with_parameters_and_quick_reply_payloads(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = {
        "name": "Cart",
        "start": "remind",
        "nodes": [
            {
                "id": "remind",
                "type": "template",
                "template": "cart_reminder",
                "language": "es",
                "params": {"body": ["{{contact.phone}}"]},
                "buttons": [{"id": "buy", "next": "bought"}, {"id": "later", "next": None}],
            },
            {"id": "bought", "type": "tag", "add": ["buyer"], "next": None},
        ],
    }
    flow_id = await publish(gql, flow)  # the fake approves at once: the flow is active
    assert (await gql("query($id: ID!) { flow(id: $id) { status } }", id=flow_id))["flow"][
        "status"
    ] == "ACTIVE"
    phone = "+5491100000102"
    await start(gql, flow_id, phone)  # no window needed for a template
    [body] = await wait_sent(fake, phone, 1)
    template = body["template"]
    assert template["name"] == "cart_reminder" and template["language"]["code"] == "es"
    components = {(c["type"], c.get("index")): c for c in template["components"]}
    assert components[("body", None)]["parameters"] == [{"type": "text", "text": phone}]
    assert components[("button", "0")]["parameters"][0]["payload"] == "buy"
    assert components[("button", "1")]["parameters"][0]["payload"] == "later"

    [record] = await eventually(lambda: outbound(runtime, phone), lambda found: len(found) == 1)
    assert record["cost_estimate"]["country"] == "AR"
    assert record["cost_estimate"]["amount"] == pytest.approx(0.026)  # UTILITY, Argentina, window closed

    await say(gql, phone, button="buy")
    state = await gql(STEPS, p=phone)
    assert state["contact"]["runs"][0]["status"] == "COMPLETED"


async def test_list_message_through_the_router(
    runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    rows = [{"id": f"size_{s}", "title": f"Talla {s}"} for s in ("S", "M", "L", "XL")]
    message = {
        "id": "msg_list_1",
        "to": "+34600000103",
        "kind": "list",
        "text": "¿Qué talla?",
        "list": {"button": "Ver tallas", "sections": [{"title": "Tallas", "rows": rows}]},
    }
    result = await runtime.channel.send(WORKSPACE, message)
    assert result.ok and result.provider_id and result.provider_id.startswith("wamid.")
    [body] = fake.sent()
    assert body["interactive"]["action"]["sections"][0]["rows"][3]["id"] == "size_XL"
    again = await runtime.channel.send(WORKSPACE, message)  # a redelivery is not sent twice
    assert again.provider_id == result.provider_id and len(fake.sent()) == 1


async def test_rate_limit_and_server_error_storms_are_retried(
    runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    fake.rate_limit(times=2)
    fake.rate_limit(times=1, code=4)  # the app's request limit (131056, the pair rate, is held instead)
    fake.server_errors(times=1, status=500)
    fake.server_errors(times=1, status=503)
    runtime.graph.policy = replace(FAST_RETRIES, attempts=8)
    result = await runtime.channel.send(
        WORKSPACE, {"id": "msg_storm_1", "to": "+34600000104", "kind": "text", "text": "hola"}
    )
    assert result.ok
    assert [r.fault for r in fake.requests] == ["130429", "130429", "4", "1", "2", None]


async def test_a_send_whose_connection_failed_is_retried(
    runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    """Refused connections certainly left nothing at Meta: the send is tried again."""
    closed = await GraphApiFake().start()
    port = closed.url.rsplit(":", 1)[1]
    await closed.stop()  # a port nobody listens on now
    moved = await runtime.channels.update(WORKSPACE, channel["_id"], {"base_url": f"http://127.0.0.1:{port}"})
    assert moved is not None
    runtime.channel.forget(WORKSPACE)
    result = await runtime.channel.send(
        WORKSPACE, {"id": "msg_refused_1", "to": "+34600000109", "kind": "text", "text": "hola"}
    )
    assert not result.ok and result.retry and result.error_code == "UNREACHABLE"


@pytest.mark.parametrize("fault", ["late", "timeout", "reset"])
async def test_a_send_that_may_have_reached_meta_is_never_sent_twice(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake, fault: str
) -> None:
    """Meta got the message (``late``: accepted, answered after the client's 0.5 s read timeout;
    ``timeout``: hanging; ``reset``: dropped after reading): no retry, no redelivery by recovery;
    the message ends failed with OUTCOME_UNKNOWN, so it is not lost silently either."""
    flow_id = await publish(gql, chain(f"Unknown {fault}", [{"id": "hi", "type": "message", "text": "hola"}]))
    phone = "+34600000108"
    await say(gql, phone, "hola")
    if fault == "late":
        fake.late_answers(seconds=2.0)
    elif fault == "timeout":
        fake.timeouts()
        fake.hang_seconds = 2.0
    else:
        fake.resets()
    await start(gql, flow_id, phone)

    async def failed_step() -> list[dict[str, Any]]:
        runs = (await gql(STEPS, p=phone))["contact"]["runs"]
        return [s for s in runs[0]["steps"] if s["action"] == "message_status" and s["outcome"] == "failed"]

    [step] = await eventually(failed_step, lambda found: len(found) == 1)
    assert step["node"] == "hi" and step["detail"]["error_code"] == "OUTCOME_UNKNOWN"
    await runtime.recover_now()  # what the periodic recovery pass does: nothing left to redeliver
    contact = await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))
    assert contact is not None and not contact.get("outbox")
    [record] = await outbound(runtime, phone)
    assert record["status"] == "failed" and record["error_code"] == "OUTCOME_UNKNOWN"
    to_phone = [r for r in fake.requests if r.path.endswith("/messages") and r.body["to"] == phone[1:]]
    assert [r.fault for r in to_phone] == [fault]  # exactly one POST: never repeated


async def test_storm_longer_than_the_retries_is_delivered_by_recovery(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await publish(gql, chain("Storm", [{"id": "hi", "type": "message", "text": "hola"}]))
    phone = "+34600000105"
    await say(gql, phone, "hola")
    fake.server_errors(times=6, status=503)  # more than the 5 attempts of one delivery
    await start(gql, flow_id, phone)

    async def pending() -> Any:
        return await runtime.contacts.load(await key_of(runtime, WORKSPACE, phone))

    await eventually(pending, lambda doc: doc is not None and len(doc.get("outbox", [])) == 1)
    await runtime.recover_now()  # what the periodic recovery pass does
    await wait_sent(fake, phone, 1)
    await eventually(pending, lambda doc: not doc.get("outbox"))
    assert sum(1 for r in fake.requests if r.fault == "2") == 6


@pytest.mark.parametrize("code", [131047, 131026, 131008, 132000, 132001])
async def test_permanent_errors_end_the_message_with_their_code(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake, code: int
) -> None:
    flow_id = await publish(gql, chain(f"Fails {code}", [{"id": "hi", "type": "message", "text": "hola"}]))
    phone = "+34600000106"
    await say(gql, phone, "hola")
    fake.permanent(code)
    await start(gql, flow_id, phone)

    async def failed_step() -> list[dict[str, Any]]:
        runs = (await gql(STEPS, p=phone))["contact"]["runs"]
        return [s for s in runs[0]["steps"] if s["action"] == "message_status" and s["outcome"] == "failed"]

    [step] = await eventually(failed_step, lambda found: len(found) == 1)
    assert step["node"] == "hi" and step["detail"]["error_code"] == str(code)
    # Our words for Meta's code, never the remote body (a tenant-chosen base URL could fill it).
    assert step["detail"]["error"].startswith(f"WhatsApp API error {code}: ")
    assert "(#" not in step["detail"]["error"]
    [record] = await outbound(runtime, phone)
    assert record["status"] == "failed" and record["error_code"] == str(code)
    assert len([r for r in fake.requests if r.path.endswith("/messages")]) == 1  # never retried


async def test_paused_and_disabled_templates_are_not_sent(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow = chain("Paused", [{"id": "t", "type": "template", "template": "paused_one", "language": "es"}])
    flow_id = await publish(gql, flow)
    for status, phone in (("PAUSED", "+34600000107"), ("DISABLED", "+34600000108")):
        await apply_template_status(
            runtime, WORKSPACE, meta_id=None, name="paused_one", language="es", status=status, reason=None
        )
        await start(gql, flow_id, phone)
        record = await eventually(lambda p=phone: outbound(runtime, p), lambda found: len(found) == 1)
        assert record[0]["status"] == "failed" and record[0]["error_code"] == f"TEMPLATE_{status}"
    assert fake.sent() == []


async def test_provider_with_its_own_key_header(runtime: Runtime, api_key: str) -> None:
    fake = await GraphApiFake(auth_header="D360-API-KEY", auth_scheme="", token="provider-key").start()
    try:
        await connect_fake(runtime, WORKSPACE, fake)
        result = await runtime.channel.send(
            WORKSPACE, {"id": "msg_bsp_1", "to": "+34600000109", "kind": "text", "text": "hola"}
        )
        assert result.ok
        assert fake.requests[0].headers["d360-api-key"] == "provider-key"
    finally:
        await fake.stop()


async def test_sandbox_stays_the_default(gql: GraphQLClient, runtime: Runtime, fake: GraphApiFake) -> None:
    await say(gql, "+34600000110", "hola")  # the contact the outbox message is addressed to
    key = await key_of(runtime, WORKSPACE, "+34600000110")
    message = {
        "id": "msg_sb_1",
        "to": "+34600000110",
        "contact_id": key.doc_id,
        "kind": "text",
        "text": "hola",
    }
    result = await runtime.channel.send(WORKSPACE, message)
    assert result.ok and fake.requests == []
    outbox = await gql('{ sandboxOutbox(phone: "+34600000110") { text } }')
    assert outbox["sandboxOutbox"] == [{"text": "hola"}]


async def test_template_sends_read_a_cache_that_sees_every_change_of_the_template(
    gql: GraphQLClient, runtime: Runtime, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    """A broadcast sends one template thousands of times: the channel reads it from the process's
    cache, not the store, and a pause, a rejection or an approval is seen by the very next send."""
    await publish(
        gql, chain("Cached", [{"id": "t", "type": "template", "template": "cached", "language": "es"}])
    )
    store_reads: list[str] = []
    read_from_store = runtime.templates.get_by_name

    async def counted(workspace_id: str, name: str, language: str | None = None) -> list[dict[str, Any]]:
        store_reads.append(name)
        return await read_from_store(workspace_id, name, language)

    runtime.templates.get_by_name = counted  # type: ignore[method-assign]

    async def send(phone: str) -> SendResult:
        message = {
            "id": new_id("msg"),
            "to": phone,
            "kind": "template",
            "template": {"name": "cached", "language": "es", "params": {}},
        }
        return await runtime.whatsapp.send(WORKSPACE, message, channel, fresh=True)

    for index in range(3):
        assert (await send(f"+3460000030{index}")).ok
    assert store_reads == []  # every send after the first load came from the cache

    async def meta_says(status: str, reason: str | None = None) -> None:
        await apply_template_status(
            runtime, WORKSPACE, meta_id=None, name="cached", language="es", status=status, reason=reason
        )

    await meta_says("PAUSED")
    paused = await send("+34600000310")
    assert not paused.ok and paused.error_code == "TEMPLATE_PAUSED"
    await meta_says("REJECTED", "INVALID_FORMAT")
    rejected = await send("+34600000311")
    assert not rejected.ok and rejected.error_code == "TEMPLATE_NOT_APPROVED"
    assert "INVALID_FORMAT" in (rejected.error or "")
    await meta_says("APPROVED")
    assert (await send("+34600000312")).ok
    assert [b["to"] for b in fake.sent()] == ["34600000300", "34600000301", "34600000302", "34600000312"]
