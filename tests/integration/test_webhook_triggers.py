"""Webhook triggers end to end: POST /hooks/{id} signed both ways, retries, bad payloads, recovery.

Also the API trigger (startFlow with variables, connect_flow carrying them on) and the validator
warning a webhook trigger turns on.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx

from server.runtime import Runtime
from server.triggers.signatures import konvo_header, konvo_signature, shopify_signature
from tests.integration.conftest import WORKSPACE, client_for, publish
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually

ORDER_FLOW = {
    "name": "Order update",
    "start": "notify",
    "nodes": [
        {
            "id": "notify",
            "type": "template",
            "template": "order_update",
            "language": "es",
            "params": {"body": ["{{trigger.order_id}}", "{{trigger.first_item}}"]},
            "next": None,
        },
    ],
}
MAPPING = {
    "phone": "customer.phone",
    "variables": {"order_id": "id", "first_item": "line_items.0.title"},
    "idempotency_key": "id",
}
ORDER = {"id": 1001, "customer": {"phone": "+34 600 111 222"}, "line_items": [{"title": "Camiseta"}]}
CREATE = """mutation($f: ID!, $m: JSON!, $s: String) {
  createWebhookTrigger(flowId: $f, mapping: $m, secret: $s) { id url secret flowId mapping } }"""
RUNS = "query($p: String!) { contact(phone: $p) { runs { flowName status trigger } } }"


async def make_trigger(
    gql: GraphQLClient, flow_id: str, mapping: dict[str, Any], secret: str | None = None
) -> dict[str, Any]:
    return (await gql(CREATE, f=flow_id, m=mapping, s=secret))["createWebhookTrigger"]


def signed(trigger: dict[str, Any], payload: Any) -> tuple[bytes, dict[str, str]]:
    """The body and headers a sender writes now (timestamped signature: the default scheme)."""
    body = json.dumps(payload).encode()
    return body, signed_headers(trigger["secret"], body)


def signed_headers(secret: str, body: bytes, ago: int = 0, at: int | None = None) -> dict[str, str]:
    return {
        "X-Konvo-Signature": konvo_header(secret, body, (int(time.time()) if at is None else at) - ago),
        "Content-Type": "application/json",
    }


async def post(
    http: httpx.AsyncClient, trigger: dict[str, Any], body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await http.post(f"/hooks/{trigger['id']}", content=body, headers=headers)


async def outbox(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    return (await gql("query($p: String!) { sandboxOutbox(phone: $p) { kind template } }", p=phone))[
        "sandboxOutbox"
    ]


async def runs_of(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    contact = (await gql(RUNS, p=phone))["contact"]
    return contact["runs"] if contact else []


async def test_signed_request_starts_the_flow_once_even_when_retried(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    assert trigger["url"].endswith(f"/hooks/{trigger['id']}") and len(trigger["secret"]) == 64
    body = json.dumps(ORDER).encode()
    stamp = int(time.time())
    first = await post(gql.http, trigger, body, signed_headers(trigger["secret"], body, at=stamp))
    assert first.status_code == 202, first.text
    assert first.json()["phone"] == "+34600111222"
    phone = "+34600111222"
    runs = await eventually(lambda: runs_of(gql, phone), lambda r: len(r) == 1)
    assert runs[0]["trigger"] == {"order_id": 1001, "first_item": "Camiseta"}
    # The sender retries with a new signature (another timestamp: the same one would be a replay).
    retry = await post(gql.http, trigger, body, signed_headers(trigger["secret"], body, at=stamp - 1))
    assert retry.status_code == 202 and retry.json()["duplicate"] is True
    other = {**ORDER, "id": 1002}
    await post(gql.http, trigger, *signed(trigger, other))
    runs = await eventually(lambda: runs_of(gql, phone), lambda r: len(r) == 2)
    assert [r["trigger"]["order_id"] for r in runs] == [1001, 1002]
    sent = await outbox(gql, phone)
    assert [m["template"]["params"]["body"] for m in sent] == [["1001", "Camiseta"], ["1002", "Camiseta"]]


async def test_bad_or_missing_konvo_signature_is_401(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    body, headers = signed(trigger, ORDER)
    tampered = body.replace(b"1001", b"9999")
    response = await post(gql.http, trigger, tampered, headers)
    assert response.status_code == 401 and "does not match" in response.json()["error"]
    response = await post(gql.http, trigger, body, {"Content-Type": "application/json"})
    assert response.status_code == 401 and "X-Konvo-Signature" in response.json()["error"]
    assert await runs_of(gql, "+34600111222") == []


async def test_shopify_hmac_and_webhook_id_dedupe(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    secret = "shpss_0123456789abcdef0123"
    mapping = {
        "phone": "customer.phone",
        "variables": {"order_id": "id", "first_item": "line_items.0.title"},
        "signature": "shopify",
    }
    trigger = await make_trigger(gql, flow_id, mapping, secret)
    body = json.dumps({**ORDER, "customer": {"phone": "+52 55 1234 5678"}}).encode()
    headers = {"X-Shopify-Hmac-Sha256": shopify_signature(secret, body), "X-Shopify-Webhook-Id": "wh-1"}
    assert (await post(gql.http, trigger, body, headers)).status_code == 202
    assert (await post(gql.http, trigger, body, headers)).status_code == 202  # Shopify retries
    phone = "+525512345678"
    await eventually(lambda: runs_of(gql, phone), lambda r: len(r) == 1)
    wrong = {**headers, "X-Shopify-Hmac-Sha256": shopify_signature("another-secret-xxxxxxxx", body)}
    assert (await post(gql.http, trigger, body, wrong)).status_code == 401
    konvo_only = {"X-Konvo-Signature": konvo_signature(secret, body)}
    assert (await post(gql.http, trigger, body, konvo_only)).status_code == 401
    assert len(await runs_of(gql, phone)) == 1


async def test_bad_payload_is_400_naming_the_path(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    no_phone = {**ORDER, "customer": {"email": "a@b.example"}}
    response = await post(gql.http, trigger, *signed(trigger, no_phone))
    assert response.status_code == 400
    assert response.json()["path"] == "customer.phone" and "customer.phone" in response.json()["error"]
    no_items = {**ORDER, "line_items": []}
    response = await post(gql.http, trigger, *signed(trigger, no_items))
    assert response.status_code == 400 and response.json()["path"] == "line_items.0.title"
    national = {**ORDER, "customer": {"phone": "600 111 222"}}  # no country known yet
    response = await post(gql.http, trigger, *signed(trigger, national))
    assert response.status_code == 400 and "default_country" in response.json()["error"]
    body = b"{not json"
    response = await post(gql.http, trigger, body, signed_headers(trigger["secret"], body))
    assert response.status_code == 400


async def test_national_numbers_use_the_mapping_or_workspace_country(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    by_mapping = await make_trigger(gql, flow_id, {**MAPPING, "default_country": "mx"})
    payload = {**ORDER, "customer": {"phone": "55 1234 5678"}}
    response = await post(gql.http, by_mapping, *signed(by_mapping, payload))
    assert response.json()["phone"] == "+525512345678"
    assert (await gql('mutation { setDefaultCountry(country: "es") }'))["setDefaultCountry"] == "ES"
    by_workspace = await make_trigger(gql, flow_id, MAPPING)
    payload = {**ORDER, "id": 7, "customer": {"phone": "612-34-56-78"}}
    response = await post(gql.http, by_workspace, *signed(by_workspace, payload))
    assert response.status_code == 202 and response.json()["phone"] == "+34612345678"


async def test_mapping_errors_name_the_key(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    cases = [
        ({"variables": {}}, "mapping.phone"),
        ({"phone": "customer..phone"}, "mapping.phone"),
        ({"phone": "p", "default_country": "XX"}, "mapping.default_country"),
        ({"phone": "p", "signature": "md5"}, "mapping.signature"),
        ({"phone": "p", "variables": {"bad name": "x"}}, "mapping.variables"),
    ]
    for mapping, where in cases:
        try:
            await make_trigger(gql, flow_id, mapping)
        except GraphQLErrors as exc:
            assert exc.codes == ["INVALID_INPUT"] and where in str(exc), (mapping, str(exc))
        else:
            raise AssertionError(f"{mapping} was accepted")


async def test_trigger_list_delete_and_inactive_flow(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    listed = await gql("query($f: ID) { webhookTriggers(flowId: $f) { id } }", f=flow_id)
    assert listed["webhookTriggers"] == [{"id": trigger["id"]}]
    await gql("mutation($id: ID!) { archiveFlow(id: $id) { status } }", id=flow_id)
    response = await post(gql.http, trigger, *signed(trigger, ORDER))
    assert response.status_code == 409 and "archived" in response.json()["error"]
    await gql("mutation($id: ID!) { deleteWebhookTrigger(id: $id) }", id=trigger["id"])
    assert (await post(gql.http, trigger, *signed(trigger, ORDER))).status_code == 404


async def test_store_down_is_503(runtime: Runtime, gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    broken = Runtime(runtime.settings)  # never started: its store client is closed below
    await broken.database.close()
    client = client_for(broken, None)
    try:
        response = await post(client.http, trigger, *signed(trigger, ORDER))
    finally:
        await client.http.aclose()
        await broken.redis.aclose()
    assert response.status_code == 503


async def test_recovery_applies_a_stored_request_once(runtime: Runtime, gql: GraphQLClient) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    phone = "+34600999888"
    request = {
        "_id": f"{trigger['id']}:55",
        "workspace_id": WORKSPACE,
        "trigger_id": trigger["id"],
        "flow_id": flow_id,
        "phone": phone,
        "trigger": {"order_id": 55, "first_item": "Gorra"},
        "event_id": f"hook:{trigger['id']}:55",
        "body": "{}",
        "received_at": runtime.clock.now() - timedelta(minutes=5),
    }
    assert (await runtime.services.hook_requests.record(request))[0]  # stored, then the process died
    assert await runtime.triggers.recover() == 1
    assert await runtime.triggers.recover() == 0
    stored = await runtime.services.hook_requests.get(request["_id"])
    assert stored is not None and stored["applied"] and stored["run_id"]
    runs = await runs_of(gql, phone)
    assert [r["trigger"]["order_id"] for r in runs] == [55]


async def test_validate_flow_warns_about_a_simple_message_after_a_webhook_start(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        {
            "name": "Thanks",
            "start": "hi",
            "nodes": [{"id": "hi", "type": "message", "text": "Gracias por tu pedido", "next": None}],
        },
    )
    validate = "mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code } }"
    assert (await gql(validate, id=flow_id))["validateFlow"] == []
    await make_trigger(gql, flow_id, MAPPING)
    assert (await gql(validate, id=flow_id))["validateFlow"] == [
        {"nodeId": "hi", "severity": "WARNING", "code": "SIMPLE_MESSAGE_AFTER_WEBHOOK_START"}
    ]


async def test_api_start_checks_the_flow_and_connect_flow_keeps_the_trigger(gql: GraphQLClient) -> None:
    start = (
        "mutation($f: ID!, $p: String!, $v: JSON) { startFlow(flowId: $f, phone: $p, variables: $v) { id } }"
    )
    try:
        await gql(start, f="flow_missing", p="+34600123001", v={"a": 1})
    except GraphQLErrors as exc:
        assert exc.codes == ["NOT_FOUND"]
    else:
        raise AssertionError("an unknown flow started")
    await publish(
        gql,
        {
            "name": "Second",
            "start": "tpl",
            "nodes": [
                {
                    "id": "tpl",
                    "type": "template",
                    "template": "order_update",
                    "language": "es",
                    "params": {"body": ["{{trigger.order_id}}", "x"]},
                    "next": None,
                }
            ],
        },
    )
    first = await publish(
        gql,
        {"name": "First", "start": "go", "nodes": [{"id": "go", "type": "connect_flow", "flow": "Second"}]},
    )
    await gql(start, f=first, p="+34600123002", v={"order_id": "B-9"})
    runs = await runs_of(gql, "+34600123002")
    assert [(r["flowName"], r["trigger"]) for r in runs] == [
        ("First", {"order_id": "B-9"}),
        ("Second", {"order_id": "B-9"}),
    ]
    assert [m["template"]["params"]["body"] for m in await outbox(gql, "+34600123002")] == [["B-9", "x"]]
