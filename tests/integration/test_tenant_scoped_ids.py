"""Issue 15, findings 4 and 10: provider ids and phone number ids never cross workspaces.

Two tenants on one server, each with its own WhatsApp channel connected and verified through the
API and the webhook handshake, driven over HTTP on the real store: one wamid posted to both gives
two independent messages; a phone number id is unique within a workspace only, a channel takes
events only after Meta's handshake, and connecting again reaches only the caller's own channel. Documents
stored by the previous version (bare wamids as ids) keep deduplicating and settling.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from server.config import Settings
from server.ids import new_id, scoped_id
from server.runtime import Runtime
from server.store.database import Database
from server.web.app import create_app
from tests.integration.conftest import client_for, make_workspace
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp_webhooks import WebhookClient, message_of, payload, status_payload, value_of

CONNECT = """mutation($i: ConnectWhatsAppInput!) {
  connectWhatsApp(input: $i) { id phoneNumberId verifyToken webhookUrl } }"""
CONVERSATION = "query($p: String!) { conversation(phone: $p) { name messages { id text direction } } }"


@dataclass
class Tenant:
    workspace_id: str
    gql: GraphQLClient
    app_secret: str
    customer_wa_id: str

    @property
    def customer(self) -> str:
        return "+" + self.customer_wa_id


@pytest.fixture(name="http")
async def http_fixture(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        yield http


async def tenant(runtime: Runtime, workspace_id: str, customer_wa_id: str) -> Tenant:
    key = await make_workspace(runtime, workspace_id)
    return Tenant(workspace_id, client_for(runtime, key), f"secret-of-{workspace_id}", customer_wa_id)


async def connect(who: Tenant, phone_number_id: str) -> dict[str, Any]:
    data = await who.gql(
        CONNECT,
        i={
            "phoneNumberId": phone_number_id,
            "wabaId": f"waba-{who.workspace_id}",
            "accessToken": f"token-{who.workspace_id}",
            "appSecret": who.app_secret,
            "baseUrl": "http://127.0.0.1:9",
        },
    )
    return data["connectWhatsApp"]


async def verified_hook(http: httpx.AsyncClient, who: Tenant, channel: dict[str, Any]) -> WebhookClient:
    hook = WebhookClient(http, channel["id"], app_secret=who.app_secret)
    answer = await hook.handshake(verify_token=channel["verifyToken"], challenge="8861")
    assert (answer.status_code, answer.text) == (200, "8861")
    return hook


def text_from(who: Tenant, phone_number_id: str, wamid: str, text: str, name: str) -> dict[str, Any]:
    body = payload("text")
    value = value_of(body)
    value["metadata"]["phone_number_id"] = phone_number_id
    value["contacts"][0].update(wa_id=who.customer_wa_id, profile={"name": name})
    message = message_of(body)
    message.update(id=wamid, timestamp=str(int(datetime.now(UTC).timestamp())), text={"body": text})
    message["from"] = who.customer_wa_id
    return body


async def conversation(who: Tenant, phone: str) -> dict[str, Any] | None:
    return (await who.gql(CONVERSATION, p=phone))["conversation"]


async def test_one_wamid_replayed_into_two_workspaces_gives_two_independent_messages(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    alice = await tenant(runtime, "ws_alice", "34600111001")
    mallory = await tenant(runtime, "ws_mallory", "34600111002")
    alice_hook = await verified_hook(http, alice, await connect(alice, "100000000000001"))
    mallory_hook = await verified_hook(http, mallory, await connect(mallory, "100000000000002"))
    wamid = f"wamid.{new_id('shared')}"

    # Alice's customer writes; Mallory learns the wamid and posts it to her own channel, signed
    # with her own app secret, right behind it (before or after Alice's turn has applied it).
    first = text_from(alice, "100000000000001", wamid, "Mi pedido 4471 no llegó", "Alicia Privada")
    second = text_from(mallory, "100000000000002", wamid, "hola", "Cliente de Mallory")
    assert (await alice_hook.post(first)).status_code == 200
    assert (await mallory_hook.post(second)).status_code == 200

    seen_by_alice = await eventually(
        lambda: conversation(alice, alice.customer), lambda c: c is not None and c["messages"]
    )
    seen_by_mallory = await eventually(
        lambda: conversation(mallory, mallory.customer), lambda c: c is not None and c["messages"]
    )
    assert seen_by_alice is not None and seen_by_mallory is not None
    assert seen_by_alice["name"] == "Alicia Privada"
    assert seen_by_alice["messages"] == [{"id": wamid, "text": "Mi pedido 4471 no llegó", "direction": "IN"}]
    assert seen_by_mallory["name"] == "Cliente de Mallory"
    assert seen_by_mallory["messages"] == [{"id": wamid, "text": "hola", "direction": "IN"}]
    assert await conversation(mallory, alice.customer) is None
    assert await conversation(alice, mallory.customer) is None

    # Meta's retry of Alice's message is still one message; Mallory's repeat changes nothing of Alice's.
    assert (await alice_hook.post(first)).status_code == 200
    assert (
        await mallory_hook.post(text_from(mallory, "100000000000002", wamid, "otra", "X"))
    ).status_code == 200
    await runtime.recover_now()
    assert (await conversation(alice, alice.customer) or {})["messages"] == seen_by_alice["messages"]
    assert (await conversation(mallory, mallory.customer) or {})["messages"] == seen_by_mallory["messages"]


async def test_a_number_id_is_unique_per_workspace_and_a_conflict_names_no_other_tenant(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    alice = await tenant(runtime, "ws_alice", "34600111001")
    mallory = await tenant(runtime, "ws_mallory", "34600111002")
    number = "106540352242922"
    alices = await connect(alice, number)
    alice_hook = await verified_hook(http, alice, alices)

    squatted = await connect(mallory, number)  # Mallory cannot learn that Alice has this number
    assert squatted["phoneNumberId"] == number
    again = await connect(mallory, number)  # connecting again updates Mallory's own channel
    assert again["id"] == squatted["id"] != alices["id"]

    # Alice's traffic for the number reaches Alice only.
    body = text_from(alice, number, f"wamid.{new_id('a')}", "¿Dónde está mi pedido?", "Alicia Privada")
    assert (await alice_hook.post(body)).status_code == 200
    await eventually(lambda: conversation(alice, alice.customer), lambda c: c is not None and c["messages"])
    assert await conversation(mallory, alice.customer) is None

    # Mallory's channel takes nothing until Meta's handshake on its URL; a wrong token does not verify.
    mallory_hook = WebhookClient(http, squatted["id"], app_secret=mallory.app_secret)
    refused = await mallory_hook.post(text_from(mallory, number, f"wamid.{new_id('m')}", "hola", "M"))
    assert refused.status_code == 403 and "verification" in refused.json()["error"]
    assert (await mallory_hook.handshake(verify_token="guessed")).status_code == 403
    listed = await mallory.gql("{ whatsappChannels { id webhookVerified webhookVerifiedAt } }")
    assert listed["whatsappChannels"] == [
        {"id": squatted["id"], "webhookVerified": False, "webhookVerifiedAt": None}
    ]
    assert await conversation(mallory, mallory.customer) is None

    await verified_hook(http, mallory, squatted)
    listed = await mallory.gql("{ whatsappChannels { webhookVerified webhookVerifiedAt } }")
    assert listed["whatsappChannels"][0]["webhookVerified"] is True
    assert listed["whatsappChannels"][0]["webhookVerifiedAt"] is not None
    own = text_from(mallory, number, f"wamid.{new_id('m')}", "hola", "Cliente de Mallory")
    assert (await mallory_hook.post(own)).status_code == 200
    await eventually(
        lambda: conversation(mallory, mallory.customer), lambda c: c is not None and c["messages"]
    )
    assert await conversation(alice, mallory.customer) is None


async def test_an_event_for_a_number_of_another_workspace_is_not_routed_there(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    """Metadata naming another tenant's number, even with the same app secret, stays out of it."""
    alice = await tenant(runtime, "ws_alice", "34600111001")
    mallory = await tenant(runtime, "ws_mallory", "34600111002")
    mallory.app_secret = alice.app_secret  # the worst case: both registered the same Meta app
    await verified_hook(http, alice, await connect(alice, "100000000000001"))
    mallory_hook = await verified_hook(http, mallory, await connect(mallory, "100000000000002"))
    body = text_from(alice, "100000000000001", f"wamid.{new_id('x')}", "inyectado", "Falso")
    assert (await mallory_hook.post(body)).status_code == 200  # answered once the events are stored
    assert await runtime.database.collection("messages").count_documents({"workspace_id": "ws_alice"}) == 0
    assert await conversation(alice, alice.customer) is None


# --- documents stored by the previous version ----------------------------------------------------

LEGACY_WORKSPACE = "ws_legacy"
LEGACY_CHANNEL = "ch_legacy"
LEGACY_NUMBER = "106540352242922"


async def seed_previous_version(settings: Settings, wamids: dict[str, str]) -> None:
    """What the previous version stored: bare wamids as ids, a channel without the handshake key."""
    database = Database(settings.mongodb_uri or "", settings.mongodb_db)
    at = datetime.now(UTC) - timedelta(minutes=5)
    try:
        db = database.db
        await db["workspaces"].insert_one(
            {"_id": LEGACY_WORKSPACE, "name": "old", "timezone": "UTC", "created_at": at}
        )
        await db["channels"].insert_one(
            {
                "_id": LEGACY_CHANNEL,
                "workspace_id": LEGACY_WORKSPACE,
                "kind": "whatsapp",
                "phone_number_id": LEGACY_NUMBER,
                "waba_id": "102290129340398",
                "verify_token": "old-verify",
                "app_secret": "old-secret",
                "access_token": "old-token",
                "base_url": "http://127.0.0.1:9",
                "api_version": "v23.0",
                "auth_header": "Authorization",
                "auth_scheme": "Bearer",
                "throughput_per_second": 80,
                "created_at": at,
            }
        )
        common = {"workspace_id": LEGACY_WORKSPACE, "phone": "+16505551234", "at": at}
        for name in ("applied", "pending"):
            await db["messages"].insert_one(
                {
                    "_id": wamids[name],
                    **common,
                    "channel": "whatsapp",
                    "channel_id": LEGACY_CHANNEL,
                    "kind": "text",
                    "text": f"old {name}",
                    "button_id": None,
                    "name": "Sheena Nelson",
                    "payload": {},
                    "direction": "in",
                }
            )
        await db["inbound_pending"].insert_one({"_id": wamids["pending"], **common})
        await db["messages"].insert_one(
            {
                "_id": "msg_old_out",
                **common,
                "channel": "whatsapp",
                "direction": "out",
                "kind": "text",
                "text": "old answer",
                "provider_id": wamids["out"],
                "status": "sent",
                "statuses": {"sent": at},
            }
        )
        await db["message_refs"].insert_one(
            {"_id": wamids["out"], "message_id": "msg_old_out", "workspace_id": LEGACY_WORKSPACE}
        )
        await db["message_statuses"].insert_one(
            {
                "_id": f"{wamids['out']}:sent",
                "workspace_id": LEGACY_WORKSPACE,
                "provider_id": wamids["out"],
                "status": "sent",
                "at": at,
                "state": "applied",
                "message_id": "msg_old_out",
                "phone": "+16505551234",
                "received_at": at,
            }
        )
    finally:
        await database.close()


async def test_documents_of_the_previous_version_keep_working(fast_settings: Settings) -> None:
    wamids = {name: f"wamid.{new_id(name)}" for name in ("applied", "pending", "out")}
    await seed_previous_version(fast_settings, wamids)
    runtime = Runtime(fast_settings)
    await runtime.start()
    try:
        app = create_app(runtime.settings, runtime=runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
        ) as http:
            hook = WebhookClient(http, LEGACY_CHANNEL, app_secret="old-secret")
            await runtime.recover_now()  # the unapplied old message is applied, under its old id
            key = await make_workspace(runtime, LEGACY_WORKSPACE)
            gql = client_for(runtime, key)
            shown = await eventually(
                lambda: gql(CONVERSATION, p="+16505551234"),
                lambda d: d["conversation"] is not None and len(d["conversation"]["messages"]) == 3,
            )
            texts = [m["text"] for m in shown["conversation"]["messages"]]
            assert sorted(texts) == ["old answer", "old applied", "old pending"]

            # A channel connected before the handshake check keeps taking events; Meta's retries of
            # the old messages are recognised as retries (nothing new, nothing applied twice).
            for name in ("applied", "pending"):
                retry = copy.deepcopy(payload("text"))
                message_of(retry).update(id=wamids[name], text={"body": f"old {name}"})
                message_of(retry)["timestamp"] = str(
                    int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
                )
                assert (await hook.post(retry)).status_code == 200
            # A status of an old outbound message settles through its old reference; a retried old
            # status is a duplicate.
            assert (await hook.post(status_payload("status_delivered", wamids["out"]))).status_code == 200
            assert (await hook.post(status_payload("status_sent", wamids["out"]))).status_code == 200
            await runtime.recover_now()
            outbound = await eventually(
                lambda: runtime.messages.get("msg_old_out"),
                lambda m: m is not None and m["status"] == "delivered",
            )
            assert outbound is not None
            statuses = runtime.database.collection("message_statuses")
            assert await statuses.count_documents({"provider_id": wamids["out"], "status": "sent"}) == 1
            messages = runtime.database.collection("messages")
            assert await messages.count_documents({"workspace_id": LEGACY_WORKSPACE, "direction": "in"}) == 2
            contact = await runtime.contacts.load(await key_of(runtime, LEGACY_WORKSPACE, "+16505551234"))
            assert contact is not None
            applied = contact.get("applied_events", [])
            assert applied.count(wamids["pending"]) == 1  # applied once, under the id it was stored with
            assert not {scoped_id(LEGACY_WORKSPACE, w) for w in wamids.values()} & set(applied)
            shown = await gql(CONVERSATION, p="+16505551234")
            assert len(shown["conversation"]["messages"]) == 3
            await gql.http.aclose()
    finally:
        await runtime.stop()
