"""Secrets at rest (issue 15, finding 5): channel tokens, app secrets, verify tokens, Klaviyo keys and
webhook-trigger secrets are sealed in the store, read back by a plain pymongo client as an attacker
with a database dump would; older plaintext documents keep working and are sealed at the next
start; the key rotates; a trigger secret is shown once and can be rotated.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

from server.clock import SystemClock
from server.config import Settings
from server.runtime import Runtime
from server.secret_box import SEALED_PREFIX, generate_key
from server.triggers.signatures import konvo_header
from tests.integration.conftest import WORKSPACE, client_for, make_workspace, publish
from tests.support.graphql import GraphQLClient, GraphQLErrors
from tests.support.network import HostsResolver
from tests.support.whatsapp_webhooks import WebhookClient

TOKEN, APP_SECRET, VERIFY = "EAAB-sealed-access-token", "sealed-app-secret-0001", "sealed-verify-token-01"
KLAVIYO_KEY, TRIGGER_SECRET = "pk_sealed_klaviyo_key_0001", "sealed-trigger-secret-0001"
SECRETS = (TOKEN, APP_SECRET, VERIFY, KLAVIYO_KEY, TRIGGER_SECRET)
CONNECT = """mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id verifyToken } }"""
KLAVIYO = "mutation($k: String) { setKlaviyoSettings(privateKey: $k) { configured keyHint } }"
CREATE = """mutation($f: ID!, $s: String) {
  createWebhookTrigger(flowId: $f, mapping: {phone: "phone"}, secret: $s) { id secret } }"""
ROTATE = "mutation($id: ID!, $s: String) { rotateWebhookTriggerSecret(id: $id, secret: $s) { id secret } }"
LIST = "{ webhookTriggers { id secret } }"
HELLO = {
    "name": "Hooked",
    "start": "hi",
    "nodes": [{"id": "hi", "type": "message", "text": "hola", "next": None}],
}


@pytest.fixture
def raw(settings: Settings) -> Iterator[Database[dict[str, Any]]]:
    """The database as a plain pymongo client sees it: no product code in between."""
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        yield client[settings.mongodb_db]
    finally:
        client.close()


def dump(raw: Database[dict[str, Any]]) -> str:
    return json.dumps(
        {name: list(raw[name].find()) for name in ("channels", "workspaces", "webhook_triggers")}, default=str
    )


async def configure(gql: GraphQLClient) -> tuple[str, dict[str, Any]]:
    """A WhatsApp number, Klaviyo and a webhook trigger, each with its secret; returns (channel, trigger)."""
    channel = (
        await gql(
            CONNECT,
            i={
                "phoneNumberId": "555000111",
                "wabaId": "777",
                "accessToken": TOKEN,
                "appSecret": APP_SECRET,
                "verifyToken": VERIFY,
            },
        )
    )["connectWhatsApp"]
    assert channel["verifyToken"] == VERIFY  # shown once, to the caller that set it
    assert (await gql(KLAVIYO, k=KLAVIYO_KEY))["setKlaviyoSettings"] == {
        "configured": True,
        "keyHint": "pk_sea...",
    }
    flow_id = await publish(gql, HELLO)
    trigger = (await gql(CREATE, f=flow_id, s=TRIGGER_SECRET))["createWebhookTrigger"]
    return channel["id"], trigger


async def hook(gql: GraphQLClient, trigger_id: str, secret: str, phone: str = "+34600123456") -> int:
    # A body of its own each time: the same signed request twice would be refused as a replay.
    body = json.dumps({"phone": phone, "delivery": uuid.uuid4().hex}).encode()
    response = await gql.http.post(
        f"/hooks/{trigger_id}",
        content=body,
        headers={
            "X-Konvo-Signature": konvo_header(secret, body, int(time.time())),
            "Content-Type": "application/json",
        },
    )
    return response.status_code


async def handshake(gql: GraphQLClient, channel_id: str, token: str) -> int:
    response = await WebhookClient(gql.http, channel_id).verify(
        **{"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"}
    )
    return response.status_code


async def works(gql: GraphQLClient, channel_id: str, trigger_id: str, trigger_secret: str) -> None:
    """Each secret still does its job: Meta's handshake, Meta's signed events, a signed hook."""
    assert await handshake(gql, channel_id, VERIFY) == 200
    assert await handshake(gql, channel_id, "a-guess") == 403
    signed = await WebhookClient(gql.http, channel_id, APP_SECRET).post("text")
    assert signed.status_code == 200, signed.text
    assert await hook(gql, trigger_id, trigger_secret) == 202
    assert await hook(gql, trigger_id, "not-the-secret-at-all") == 401


@pytest.fixture
async def restart(fast_settings: Settings) -> AsyncIterator[Any]:
    """Start another process on the same store, optionally with other keys; stopped afterwards."""
    started: list[tuple[Runtime, GraphQLClient]] = []

    async def start(keys: str, api_key: str) -> tuple[Runtime, GraphQLClient]:
        settings = fast_settings.model_copy(update={"secret_key": SecretStr(keys)})
        runtime = Runtime(settings, resolver=HostsResolver())
        await runtime.start()
        client = client_for(runtime, api_key)
        started.append((runtime, client))
        return runtime, client

    yield start
    for runtime, client in started:
        await client.http.aclose()
        await runtime.stop()


async def test_secrets_are_sealed_in_the_store_and_still_do_their_job(
    gql: GraphQLClient, raw: Database[dict[str, Any]], settings: Settings
) -> None:
    channel_id, trigger = await configure(gql)
    stored = dump(raw)
    for secret in SECRETS:
        assert secret not in stored
    [channel] = raw.channels.find()
    key = Fernet(settings.secret_key.get_secret_value().encode()) if settings.secret_key else None
    assert key is not None
    for field, secret in (("access_token", TOKEN), ("app_secret", APP_SECRET), ("verify_token", VERIFY)):
        assert channel[field].startswith(SEALED_PREFIX)
        assert key.decrypt(channel[field].removeprefix(SEALED_PREFIX)).decode() == secret
    workspace = raw.workspaces.find_one({"_id": WORKSPACE}) or {}
    assert workspace["settings"]["klaviyo"]["private_key"].startswith(SEALED_PREFIX)
    assert raw.webhook_triggers.find_one()["secret"].startswith(SEALED_PREFIX)  # type: ignore[index]
    await works(gql, channel_id, trigger["id"], TRIGGER_SECRET)


async def test_plaintext_documents_keep_working_and_the_next_start_seals_them(
    runtime: Runtime, raw: Database[dict[str, Any]], restart: Any, api_key: str
) -> None:
    """What an earlier version wrote (plaintext) is read as it is, then sealed by the start-up pass."""
    gql = client_for(runtime, api_key)
    flow_id = await publish(gql, HELLO)
    now = SystemClock().now()
    raw.channels.insert_one(
        {
            "_id": "chn_old",
            "workspace_id": WORKSPACE,
            "kind": "whatsapp",
            "phone_number_id": "555000222",
            "waba_id": "777",
            "verify_token": VERIFY,
            "app_secret": APP_SECRET,
            "access_token": TOKEN,
            "base_url": "https://graph.facebook.com",
            "api_version": "v23.0",
            "auth_header": "Authorization",
            "auth_scheme": "Bearer",
            "throughput_per_second": 80,
            "created_at": now,
        }
    )
    raw.workspaces.update_one(
        {"_id": WORKSPACE},
        {"$set": {"settings.klaviyo": {"private_key": KLAVIYO_KEY, "base_url": "https://a.klaviyo.com"}}},
    )
    raw.webhook_triggers.insert_one(
        {
            "_id": "hook_old",
            "workspace_id": WORKSPACE,
            "flow_id": flow_id,
            "mapping": {"phone": "phone"},
            "secret": TRIGGER_SECRET,
            "created_at": now,
        }
    )
    await works(gql, "chn_old", "hook_old", TRIGGER_SECRET)
    assert all(secret in dump(raw) for secret in SECRETS)  # nothing rewrote them behind our back
    _, again = await restart(runtime.settings.secret_key.get_secret_value(), api_key)  # type: ignore[union-attr]
    stored = dump(raw)
    assert not any(secret in stored for secret in SECRETS)
    await works(again, "chn_old", "hook_old", TRIGGER_SECRET)
    view = (await again("{ klaviyoSettings { keyHint } }"))["klaviyoSettings"]
    assert view == {"keyHint": "pk_sea..."}
    await gql.http.aclose()


async def test_the_key_rotates_without_losing_a_secret(
    runtime: Runtime, raw: Database[dict[str, Any]], restart: Any, api_key: str
) -> None:
    gql = client_for(runtime, api_key)
    channel_id, trigger = await configure(gql)
    old = runtime.settings.secret_key.get_secret_value()  # type: ignore[union-attr]
    new = generate_key()
    # 1. The new key first, the old one kept: the start re-seals everything with the new key.
    await restart(f"{new},{old}", api_key)
    [channel] = raw.channels.find()
    assert Fernet(new.encode()).decrypt(channel["access_token"].removeprefix(SEALED_PREFIX)).decode() == TOKEN
    stored_trigger = raw.webhook_triggers.find_one() or {}
    assert Fernet(new.encode()).decrypt(stored_trigger["secret"].removeprefix(SEALED_PREFIX)).decode() == (
        TRIGGER_SECRET
    )
    # 2. The old key dropped: everything still opens.
    _, rotated = await restart(new, api_key)
    await works(rotated, channel_id, trigger["id"], TRIGGER_SECRET)
    assert (await rotated("{ klaviyoSettings { keyHint } }"))["klaviyoSettings"] == {"keyHint": "pk_sea..."}
    # 3. A key that never sealed them opens nothing, and says so at start.
    stranger, _ = await restart(generate_key(), api_key)
    assert await stranger.channels.reseal() == (0, 3)  # token, app secret, verify token
    await gql.http.aclose()


async def test_a_trigger_secret_is_shown_once_and_can_be_rotated(
    gql: GraphQLClient, runtime: Runtime, raw: Database[dict[str, Any]]
) -> None:
    flow_id = await publish(gql, HELLO)
    created = (await gql(CREATE, f=flow_id, s=None))["createWebhookTrigger"]
    assert len(created["secret"]) == 64
    assert (await gql(LIST))["webhookTriggers"] == [{"id": created["id"], "secret": None}]
    rotated = (await gql(ROTATE, id=created["id"]))["rotateWebhookTriggerSecret"]
    assert rotated["id"] == created["id"] and len(rotated["secret"]) == 64
    assert rotated["secret"] != created["secret"]
    assert rotated["secret"] not in dump(raw)
    assert (await gql(LIST))["webhookTriggers"] == [{"id": created["id"], "secret": None}]
    assert await hook(gql, created["id"], created["secret"]) == 401  # the old secret stopped working
    assert await hook(gql, created["id"], rotated["secret"]) == 202
    given = (await gql(ROTATE, id=created["id"], s="shpss_new_signing_key_01"))["rotateWebhookTriggerSecret"]
    assert given["secret"] == "shpss_new_signing_key_01"
    assert await hook(gql, created["id"], "shpss_new_signing_key_01", phone="+34600123457") == 202
    # Another workspace's key cannot rotate it (nor learn that it exists).
    other = client_for(runtime, await make_workspace(runtime, "ws_other"))
    with pytest.raises(GraphQLErrors) as caught:
        await other(ROTATE, id=created["id"])
    assert caught.value.codes == ["NOT_FOUND"]
    with pytest.raises(GraphQLErrors) as short:
        await gql(ROTATE, id=created["id"], s="short")
    assert short.value.codes == ["INVALID_INPUT"]
    await other.http.aclose()
