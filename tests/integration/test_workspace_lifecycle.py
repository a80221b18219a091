"""Workspaces for operators, through the operator API (``/operator/graphql``) on the real store and
Redis: a created workspace serves a flow with its own key; disabling it refuses its keys, answers
its webhooks 410 and holds its timers, which fire once it is enabled again; deleting it leaves no
document and no Redis key of it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr

from server.channels.whatsapp.signature import signature_for
from server.clock import SystemClock
from server.config import Settings
from server.ids import scoped_id
from server.redis_keys import arq_job_id
from server.runtime import Runtime
from server.store.workspace_data import GLOBAL_COLLECTIONS, WORKSPACES
from server.triggers.signatures import konvo_header
from tests.integration.broadcast_support import create_template, finished
from tests.integration.conftest import publish
from tests.integration.workspace_support import (
    CREATE,
    DELETE,
    DISABLE,
    ENABLE,
    OPERATOR_KEY,
    OperatorClient,
    asgi_http,
    create_workspace,
    redis_mentions,
    store_mentions,
    workspace_ids,
)
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.klaviyo_fake import klaviyo_fake
from tests.support.live import live_server
from tests.support.network import HostsResolver
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_people import new_bsuid
from tests.support.whatsapp_webhooks import payload, status_payload

SERVER = Path(__file__).resolve().parents[2] / "server"
OUTBOX = "query($p: String!) { sandboxOutbox(phone: $p) { text } }"
SAY = "mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }"
KEYWORD = 'mutation($f: ID!) { createInboundTrigger(input: {flowId: $f, kind: KEYWORD, keywords: ["hola"]}) { id } }'


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
def operator_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"operator_key": SecretStr(OPERATOR_KEY)})


@pytest.fixture
async def runtime(operator_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(operator_settings, clock=clock, resolver=HostsResolver())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    client = asgi_http(runtime)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def operator(http: httpx.AsyncClient) -> OperatorClient:
    return OperatorClient(http, OPERATOR_KEY)


def ask_flow(name: str = "Ayuda") -> dict[str, Any]:
    """Asks, and nudges once when the customer stays silent for an hour."""
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "¿Te ayudamos?",
                "buttons": [{"id": "yes", "title": "Sí", "next": None}],
                "no_reply": {"after": "1h", "next": "nudge"},
            },
            {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
        ],
    }


async def texts(tenant: GraphQLClient, phone: str) -> list[str]:
    return [m["text"] for m in (await tenant(OUTBOX, p=phone))["sandboxOutbox"]]


async def test_a_workspace_created_by_the_operator_serves_a_flow_with_its_own_key(
    http: httpx.AsyncClient, operator: OperatorClient
) -> None:
    created = (
        await operator(
            CREATE, i={"name": "Zapatería Luna", "timezone": "America/Mexico_City", "defaultCountry": "mx"}
        )
    )["createWorkspace"]
    workspace = created["workspace"]
    assert workspace == {
        "id": workspace["id"],
        "name": "Zapatería Luna",
        "status": "ACTIVE",
        "timezone": "America/Mexico_City",
        "locale": "es-MX",  # the default country's language when none is given
        "defaultCountry": "MX",
    }
    tenant = GraphQLClient(http, created["adminKey"])
    me = await tenant("{ workspace { id name locale } apiKeys { name role hint } }")
    assert me["workspace"] == {"id": workspace["id"], "name": "Zapatería Luna", "locale": "es-MX"}
    assert me["apiKeys"] == [{"name": "first admin key", "role": "ADMIN", "hint": created["adminKey"][:10]}]

    flow_id = await publish(tenant, ask_flow())
    await tenant(KEYWORD, f=flow_id)
    await tenant(SAY, p="55 1234 5678", t="hola")  # a national number, read in the default country
    assert await eventually(lambda: texts(tenant, "+525512345678"), lambda t: t == ["¿Te ayudamos?"])

    listed = (await operator("{ workspaces(first: 100) { edges { node { id name status } } } }"))[
        "workspaces"
    ]
    assert {"id": workspace["id"], "name": "Zapatería Luna", "status": "ACTIVE"} in [
        e["node"] for e in listed["edges"]
    ]


async def test_workspace_keys_cannot_reach_the_operator_api(
    http: httpx.AsyncClient, operator: OperatorClient
) -> None:
    _, admin_key = await create_workspace(operator)
    for key in (admin_key, None, "not-the-operator-key"):
        with pytest.raises(GraphQLErrors) as refused:
            await OperatorClient(http, key)(CREATE, i={"name": "Otra", "timezone": "UTC"})
        assert refused.value.codes == ["UNAUTHENTICATED"]
    # The tenant API has no operator field at all, whatever the key's role.
    body = await GraphQLClient(http, admin_key).raw(
        'mutation { createWorkspace(input: {name: "x", timezone: "UTC"}) { adminKey } }'
    )
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    listed = (await operator("{ workspaces { edges { node { id } } } }"))["workspaces"]["edges"]
    assert len(listed) == 1  # nothing was created by the refused calls


async def test_the_operator_api_is_off_without_an_operator_key(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"operator_key": None})
    from server.web.app import create_app

    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        response = await http.post(
            "/operator/graphql",
            json={"query": "{ workspaces { edges { node { id } } } }"},
            headers={"Authorization": "Bearer x"},
        )
    assert response.status_code == 404


def test_a_short_operator_key_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(**{**settings.model_dump(), "operator_key": "short"})
    assert Settings(**{**settings.model_dump(), "operator_key": ""}).operator_key is None


async def test_operator_requests_are_rate_limited_and_logged_without_keys(
    fast_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fast_settings.model_copy(
        update={"operator_key": SecretStr(OPERATOR_KEY), "operator_rate_limit_points": 40}
    )
    runtime = Runtime(settings, resolver=HostsResolver())
    await runtime.start()
    try:
        async with asgi_http(runtime) as http:
            operator = OperatorClient(http, OPERATOR_KEY)
            with caplog.at_level(logging.INFO):
                _, admin_key = await create_workspace(operator)  # costs 13 points: a mutation and its fields
                guesses = [
                    await http.post(
                        "/operator/graphql",
                        json={"query": "{ workspaces { edges { cursor } } }"},
                        headers={"Authorization": f"Bearer guess-{n}"},
                    )
                    for n in range(41)
                ]
                spent = [
                    (
                        await http.post(
                            "/operator/graphql",
                            json={"query": "{ workspaces { edges { cursor } } }"},
                            headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                        )
                    ).json()
                    for _ in range(3)
                ]
    finally:
        await runtime.stop()
    assert [r.status_code for r in guesses[:40]] == [200] * 40
    assert (
        guesses[40].status_code == 429
        and guesses[40].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    )
    # Refused guesses do not spend the operator's own window; its operations do, by their cost.
    assert not spent[0].get("errors")
    assert spent[-1]["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert "operator createWorkspace ws_" in logged
    assert OPERATOR_KEY not in logged and admin_key not in logged and "guess-" not in logged


async def test_disabling_refuses_keys_sockets_and_webhooks_and_enabling_restores_them(
    runtime: Runtime, http: httpx.AsyncClient, operator: OperatorClient, clock: ShiftedClock
) -> None:
    workspace_id, key = await create_workspace(operator)
    tenant = GraphQLClient(http, key)
    flow_id = await publish(tenant, ask_flow())
    hook = (
        await tenant(
            'mutation($f: ID!) { createWebhookTrigger(flowId: $f, mapping: {phone: "phone"}) { id secret } }',
            f=flow_id,
        )
    )["createWebhookTrigger"]
    fake = await GraphApiFake(initial_template_status="APPROVED").start()
    try:
        channel = await connect_fake(runtime, workspace_id, fake)
        async with live_server(runtime) as (host, _app):
            url = f"ws://{host}/graphql"
            open_socket = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
            await open_socket.send(
                json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
            )
            assert json.loads(await open_socket.recv())["type"] == "connection_ack"

            disabled = (await operator(DISABLE, id=workspace_id))["disableWorkspace"]
            assert disabled["status"] == "DISABLED" and disabled["disabledAt"]

            with pytest.raises(websockets.ConnectionClosed) as closed:
                await open_socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            assert "disabled" in closed.value.rcvd.reason
            assert await refused_socket(url, key) == 4403
            with pytest.raises(GraphQLErrors) as refused:
                await tenant("{ workspace { id } }")
            assert refused.value.codes == ["WORKSPACE_DISABLED"]
            assert "disabled" in refused.value.errors[0]["message"]
            statuses = await webhook_statuses(http, runtime, channel, hook)
            assert statuses == {"whatsapp_post": 410, "whatsapp_handshake": 410, "hook": 410}
            assert (
                await runtime.database.collection("hook_requests").count_documents(
                    {"workspace_id": workspace_id}
                )
                == 0
            )
            assert (
                await runtime.database.collection("messages").count_documents({"workspace_id": workspace_id})
                == 0
            )

            enabled = (await operator(ENABLE, id=workspace_id))["enableWorkspace"]
            assert enabled == {"id": workspace_id, "status": "ACTIVE", "disabledAt": None}
            assert (await tenant("{ workspace { id } }"))["workspace"]["id"] == workspace_id
            statuses = await webhook_statuses(http, runtime, channel, hook)
            assert statuses == {"whatsapp_post": 200, "whatsapp_handshake": 200, "hook": 202}
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as again:
                await again.send(
                    json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
                )
                assert json.loads(await again.recv())["type"] == "connection_ack"
    finally:
        await fake.stop()


async def refused_socket(url: str, key: str) -> int:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def webhook_statuses(
    http: httpx.AsyncClient, runtime: Runtime, channel: dict[str, Any], hook: dict[str, Any]
) -> dict[str, int]:
    """What the workspace's WhatsApp webhook (a signed message, Meta's handshake) and its webhook
    trigger (a signed request) answer now."""
    body = json.dumps(payload("text")).encode()
    path = f"/webhooks/whatsapp/{channel['_id']}"
    posted = await http.post(
        path, content=body, headers={"X-Hub-Signature-256": signature_for(body, "app-secret")}
    )
    handshake = await http.get(
        path, params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"}
    )
    request = json.dumps(
        {"phone": f"+3460070{len(body) % 10}{runtime.clock.now().microsecond % 1000:03d}"}
    ).encode()
    signature = konvo_header(hook["secret"], request, int(runtime.clock.now().timestamp()))
    hooked = await http.post(
        f"/hooks/{hook['id']}", content=request, headers={"X-Konvo-Signature": signature}
    )
    return {
        "whatsapp_post": posted.status_code,
        "whatsapp_handshake": handshake.status_code,
        "hook": hooked.status_code,
    }


async def test_a_timer_due_while_disabled_fires_after_enabling(
    runtime: Runtime, http: httpx.AsyncClient, operator: OperatorClient, clock: ShiftedClock
) -> None:
    workspace_id, key = await create_workspace(operator)
    tenant = GraphQLClient(http, key)
    flow_id = await publish(tenant, ask_flow())
    phone = "+34600800001"
    await tenant(SAY, p=phone, t="buenas")  # opens the 24-hour window
    await tenant(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=phone
    )
    [timer] = (await runtime.contacts.load(await key_of(runtime, workspace_id, phone)))["timers"]
    assert runtime.timers is not None and runtime.timer_worker is not None
    queue = runtime.timers.queue_name

    await operator(DISABLE, id=workspace_id)
    clock.advance(timedelta(hours=2))
    # Due now: the worker takes it off the queue without a turn; it stays in the contact.
    job = arq_job_id(timer["id"])
    assert await runtime.redis.zscore(queue, job) is not None  # armed
    await eventually(lambda: runtime.redis.zscore(queue, job), lambda score: score is None)
    assert runtime.timer_worker.held >= 1
    contact = await runtime.contacts.load(await key_of(runtime, workspace_id, phone))
    assert [t["id"] for t in contact["timers"]] == [timer["id"]]
    assert [r["status"] for r in contact["runs"]] == ["waiting"]

    await operator(ENABLE, id=workspace_id)
    assert await eventually(lambda: texts(tenant, phone), lambda t: len(t) == 2) == [
        "¿Te ayudamos?",
        "¿Sigues ahí?",
    ]
    contact = await runtime.contacts.load(await key_of(runtime, workspace_id, phone))
    assert contact["timers"] == [] and [r["status"] for r in contact["runs"]] == ["completed"]


async def test_operator_errors_name_what_is_wrong(operator: OperatorClient) -> None:
    for spec, field in (
        ({"name": "", "timezone": "UTC"}, "name"),
        ({"name": "Tienda", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "Tienda", "timezone": "UTC", "defaultCountry": "XX"}, "defaultCountry"),
        ({"name": "Tienda", "timezone": "UTC", "locale": "not a locale"}, "locale"),
    ):
        with pytest.raises(GraphQLErrors) as refused:
            await operator(CREATE, i=spec)
        assert refused.value.codes == ["INVALID_INPUT"], spec
        assert refused.value.errors[0]["extensions"].get("field") == field, refused.value.errors
    for mutation in (DISABLE, ENABLE, DELETE):
        with pytest.raises(GraphQLErrors) as missing:
            await operator(mutation, id="ws_nope")
        assert missing.value.codes == ["NOT_FOUND"]
    assert (await operator("{ workspaces { edges { node { id } } } }"))["workspaces"]["edges"] == []


def collections_the_code_names() -> set[str]:
    """Every collection the server's code reads or writes (``collection("x")``, ``collection_name``)."""
    names: set[str] = set()
    for path in SERVER.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r'collection\("([a-z_]+)"\)', text))
        names |= set(re.findall(r'collection_name = "([a-z_]+)"', text))
    return names


async def test_deleting_a_workspace_leaves_no_document_or_redis_key_of_it(
    runtime: Runtime, http: httpx.AsyncClient, operator: OperatorClient
) -> None:
    workspace_id, key = await create_workspace(operator, name="Borrable")
    neighbour_id, neighbour_key = await create_workspace(operator, name="Vecina")
    neighbour = GraphQLClient(http, neighbour_key)
    await neighbour(KEYWORD, f=await publish(neighbour, ask_flow()))
    await neighbour(SAY, p="+34600900001", t="hola")
    await eventually(lambda: texts(neighbour, "+34600900001"), lambda t: len(t) == 1)

    async with live_server(runtime) as (host, _app):
        socket = await websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"])
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": "subscription { inboxUpdated { id } }"}}
            )
        )
        await use_every_feature(runtime, http, workspace_id, key)
        await eventually(lambda: _subscribers(runtime), lambda n: n >= 1)

        before = await store_mentions(runtime, workspace_id)
        missing = collections_the_code_names() - GLOBAL_COLLECTIONS - set(before)
        assert not missing, (
            f"the scenario stored nothing of the workspace in {missing}: extend use_every_feature so deletion is checked there"
        )
        await every_document_names_its_workspace(runtime)
        needles = await workspace_ids(runtime, workspace_id)
        assert await redis_mentions(runtime, needles), "the scenario should hold Redis keys of the workspace"
        neighbour_before = await store_mentions(runtime, neighbour_id)

        deleted = (await operator(DELETE, id=workspace_id))["deleteWorkspace"]

        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        await eventually(lambda: _subscribers(runtime), lambda n: n == 0)  # no pub/sub subscription left

    assert deleted["workspaceId"] == workspace_id
    assert {c["collection"]: c["count"] for c in deleted["collections"]} == before
    assert deleted["documents"] == sum(before.values())
    assert deleted["redisKeys"] > 0 and deleted["queuedJobs"] >= 1
    assert await store_mentions(runtime, workspace_id) == {}
    assert await redis_mentions(runtime, needles) == []
    with pytest.raises(GraphQLErrors) as gone:
        await GraphQLClient(http, key)("{ workspace { id } }")
    assert gone.value.codes == ["UNAUTHENTICATED"]
    assert await store_mentions(runtime, neighbour_id) == neighbour_before
    assert await texts(neighbour, "+34600900001") == ["¿Te ayudamos?"]
    listed = (await operator("{ workspaces { edges { node { id } } } }"))["workspaces"]["edges"]
    assert [e["node"]["id"] for e in listed] == [neighbour_id]


def _subscribers(runtime: Runtime) -> Any:
    async def count() -> int:
        return runtime.pubsub.subscriber_count

    return count()


async def every_document_names_its_workspace(runtime: Runtime) -> None:
    """The rule deletion relies on (``server/store/workspace_data.py``), held against the database's
    actual collections: every document but the deployment's own says which workspace it is of."""
    for name in await runtime.database.db.list_collection_names():
        if name in GLOBAL_COLLECTIONS or name == WORKSPACES:
            continue
        unowned = await runtime.database.collection(name).count_documents(
            {"workspace_id": {"$type": "string"}}
        )
        total = await runtime.database.collection(name).count_documents({})
        assert unowned == total, f"{total - unowned} document(s) of {name} have no workspace_id"


async def use_every_feature(runtime: Runtime, http: httpx.AsyncClient, workspace_id: str, key: str) -> None:
    """Make the workspace hold something in every collection and every kind of Redis key."""
    tenant = GraphQLClient(http, key)
    # Catalog: tags, fields, agents and their teams, templates; an AGENT key.
    await tenant('mutation { createTag(name: "vip", kind: MARKETING) { id } }')
    await tenant('mutation { createAgent(email: "ana@shop.example", name: "Ana", teams: ["Ventas"]) { id } }')
    await create_template(tenant, "promo", "MARKETING")
    await tenant('mutation { createApiKey(name: "inbox", role: AGENT) { key } }')
    # A broadcast to opted-in contacts outside the 24-hour window: recipients and messaging reach.
    for phone in ("+34600910001", "+34600910002"):
        await tenant("mutation($p: String!) { setOptIn(phone: $p, optedIn: true) { id } }", p=phone)
        await tenant('mutation($p: String!) { tagContact(phone: $p, tag: "vip") { id } }', p=phone)
    created = (
        await tenant(
            'mutation { createBroadcast(input: {segment: {tag: "vip"}, template: {name: "promo", params: {body: ["amigo"]}}}) { id } }'
        )
    )["createBroadcast"]
    await finished(tenant, created["id"])
    # A flow, its keyword trigger and a webhook trigger with a signed request (a nonce in Redis).
    flow_id = await publish(tenant, ask_flow())
    await tenant(KEYWORD, f=flow_id)
    hook = (
        await tenant(
            'mutation($f: ID!) { createWebhookTrigger(flowId: $f, mapping: {phone: "phone"}) { id secret } }',
            f=flow_id,
        )
    )["createWebhookTrigger"]
    request = json.dumps({"phone": "+34600920001"}).encode()
    signature = konvo_header(hook["secret"], request, int(runtime.clock.now().timestamp()))
    assert (
        await http.post(f"/hooks/{hook['id']}", content=request, headers={"X-Konvo-Signature": signature})
    ).status_code == 202
    # Klaviyo: a linked field set through the API queues an external sync job.
    with klaviyo_fake() as klaviyo:
        await tenant(
            "mutation($k: String, $u: String) { setKlaviyoSettings(privateKey: $k, baseUrl: $u) { configured } }",
            k=klaviyo.private_key,
            u=klaviyo.base_url,
        )
        await tenant(
            'mutation { createField(name: "city", type: TEXT, external: {provider: "klaviyo", property: "city"}) { id } }'
        )
        await tenant('mutation { setVariable(phone: "+34600920001", field: "city", value: "Madrid") { id } }')
        await eventually(lambda: _profiles(klaviyo), lambda n: n >= 1)
    # WhatsApp: a customer writes (a run starts and waits on a timer), our messages are sent through
    # the Graph API fake (references to Meta's ids), Meta reports a status for a message not known
    # yet (parked, with its mark in Redis), and a stored message waits to be applied.
    fake = await GraphApiFake(initial_template_status="APPROVED").start()
    try:
        channel = await connect_fake(runtime, workspace_id, fake)
        path = f"/webhooks/whatsapp/{channel['_id']}"
        await tenant(
            "mutation($f: ID!) { createInboundTrigger(input: {flowId: $f, kind: ANY_MESSAGE}) { id } }",
            f=flow_id,
        )
        message = payload("text")
        message["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(
            int(runtime.clock.now().timestamp())
        )
        for body in (message, status_payload("status_delivered", "wamid.not-known-yet")):
            data = json.dumps(body).encode()
            response = await http.post(
                path, content=data, headers={"X-Hub-Signature-256": signature_for(data, "app-secret")}
            )
            assert response.status_code == 200, response.text
        await eventually(lambda: _count(runtime, "message_refs", workspace_id), lambda n: n >= 1)
    finally:
        await fake.stop()
    now = runtime.clock.now()
    await runtime.messages.record_inbound(
        {
            "_id": scoped_id(workspace_id, "wamid.pending"),
            "provider_id": "wamid.pending",
            "workspace_id": workspace_id,
            "phone": "+34600930001",
            "at": now,
            "channel": "whatsapp",
            "kind": "text",
            "text": "hola",
        }
    )
    # the pending mark of a message an older version stored (one per message; still recovered)
    await runtime.database.collection("inbound_pending").insert_one(
        {"_id": scoped_id(workspace_id, "wamid.older"), "workspace_id": workspace_id, "at": now}
    )
    await eventually(lambda: _count(runtime, "runs", workspace_id), lambda n: n >= 2)
    # Identities: a phone contact and a username-only one found to be one person (a merge).
    bsuid = new_bsuid("ES")
    await tenant('mutation { setOptIn(phone: "+34600940001", optedIn: true) { id } }')
    await tenant('mutation($b: String!) { sandboxInbound(bsuid: $b, text: "hola") }', b=bsuid)
    await tenant(
        'mutation($b: String!) { sandboxInbound(phone: "+34600940001", bsuid: $b, text: "soy yo") }',
        b=bsuid,
    )
    await eventually(lambda: _count(runtime, "contact_merges", workspace_id), lambda n: n >= 1)
    # An erased contact: its tombstone's side table of message hashes.
    await tenant('mutation { sandboxInbound(phone: "+34600940002", text: "borradme") }')
    erased = (await tenant('{ contact(phone: "+34600940002") { id } }'))["contact"]["id"]
    await tenant("mutation($id: ID!) { eraseContact(id: $id) }", id=erased)
    # An import job still receiving rows: the job and its stored chunk.
    job = (
        await tenant(
            "mutation($r: JSON!) { startContactImport(rows: $r, more: true) { id } }",
            r=[{"phone": "+34600940003"}],
        )
    )["startContactImport"]["id"]
    await eventually(  # its first rows are applied while more are awaited
        lambda: tenant("query($j: ID!) { importJob(id: $j) { processed } }", j=job),
        lambda found: found["importJob"]["processed"] >= 1,
    )


async def _profiles(klaviyo: Any) -> int:
    return len(klaviyo.profiles)


async def _count(runtime: Runtime, collection: str, workspace_id: str) -> int:
    return await runtime.database.collection(collection).count_documents({"workspace_id": workspace_id})
