"""The WhatsApp webhook end to end: Meta's payloads, signed, POSTed to the real app on the real store.

Customer messages: the handshake, signature and shape checks, every message kind recorded, only
answers moving runs, the same wamid applied once, 503 when the store is away, and one replay
through a real uvicorn server on loopback. Statuses live in test_whatsapp_webhook_statuses.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo import AsyncMongoClient

from server.actors.events import Redeliver
from server.dev.embedded import free_port
from server.ids import new_id, scoped_id
from server.runtime import Runtime
from server.store.channels import new_channel
from server.store.messages import MessageRepository
from server.web.app import create_app
from tests.integration.conftest import WORKSPACE, publish
from tests.support.contacts import contact_of, key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp_webhooks import (
    APP_SECRET,
    CUSTOMER,
    CUSTOMER_NAME,
    VERIFY_TOKEN,
    WebhookClient,
    message_of,
    payload,
)

CHANNEL_ID = "ch_whatsapp_test"
RECORDED_ONLY = [
    "image",
    "document",
    "audio",
    "video",
    "sticker",
    "location",
    "contacts",
    "reaction",
    "unsupported",
]


async def stored_and_applied(runtime: Runtime, wamid: str) -> bool:
    """Stored, and applied by its actor (no pending mark left)."""
    return await runtime.messages.get(
        scoped_id(WORKSPACE, wamid)
    ) is not None and await runtime.messages.applied(scoped_id(WORKSPACE, wamid))


def fresh(name: str, wamid: str | None = None) -> dict[str, Any]:
    """Fixture ``name`` sent now (the window opens at the message's own time) with its own wamid."""
    body = payload(name)
    message = message_of(body)
    message["timestamp"] = str(int(datetime.now(UTC).timestamp()))
    message["id"] = wamid or f"wamid.{new_id('t')}"
    return body


def answers_flow(name: str = "Answers") -> dict[str, Any]:
    """A question answered by any button flavour, a free reply (which asks again), or failing."""
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "message",
                "text": "¿Qué quieres?",
                "buttons": [
                    {"id": "yes", "title": "Sí", "next": "t_yes"},
                    {"id": "buy", "title": "Comprar", "next": "t_buy"},
                    {"id": "priority_express", "title": "Urgente", "next": "t_express"},
                ],
                "on_reply": "ask_again",
            },
            {"id": "ask_again", "type": "message", "text": "¿Algo más?", "on_reply": "t_second"},
            {"id": "t_yes", "type": "tag", "add": ["said-yes"], "next": None},
            {"id": "t_buy", "type": "tag", "add": ["bought"], "next": None},
            {"id": "t_express", "type": "tag", "add": ["express"], "next": None},
            {"id": "t_second", "type": "tag", "add": ["second-reply"], "next": None},
        ],
    }


@pytest.fixture(name="graph")
async def graph_fixture(runtime: Runtime) -> AsyncIterator[GraphApiFake]:
    """Where the channel sends (if the workspace sends through it): Meta's API on loopback."""
    fake = await GraphApiFake().start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(name="channel")
async def channel_fixture(runtime: Runtime, api_key: str, graph: GraphApiFake) -> dict[str, Any]:
    document = new_channel(
        channel_id=CHANNEL_ID,
        workspace_id=WORKSPACE,
        verify_token=VERIFY_TOKEN,
        app_secret=APP_SECRET,
        created_at=runtime.clock.now(),
        **graph.channel_fields(),
    )
    await runtime.channels.insert(document)
    return document


@pytest.fixture(name="webhook")
async def webhook_fixture(runtime: Runtime, channel: dict[str, Any]) -> AsyncIterator[WebhookClient]:
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://konvo.test"
    ) as http:
        client = WebhookClient(http, channel["_id"])
        assert (await client.handshake()).status_code == 200  # Meta verifies the URL before posting
        yield client


async def contact(runtime: Runtime) -> dict[str, Any] | None:
    return await contact_of(runtime, WORKSPACE, CUSTOMER)


async def settled(runtime: Runtime) -> dict[str, Any]:
    """Wait for the contact's queued turns (a no-op event through the same mailbox), then load it."""
    assert runtime.actors is not None
    await runtime.actors.ask(
        await key_of(runtime, WORKSPACE, CUSTOMER), Redeliver(event_id=new_id("barrier"))
    )
    found = await contact(runtime)
    assert found is not None
    return found


async def open_window_and_start(runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient) -> str:
    """The customer writes first (no run waits, so it only opens the window), then a flow starts."""
    assert (await webhook.post(fresh("text"))).status_code == 200
    await eventually(
        lambda: contact(runtime), lambda c: c is not None and c.get("last_inbound_at") is not None
    )
    flow_id = await publish(gql, answers_flow())
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id status node } }",
        f=flow_id,
        p=CUSTOMER,
    )
    assert data["startFlow"]["status"] == "WAITING", data
    return data["startFlow"]["id"]


def the_run(document: dict[str, Any], run_id: str) -> dict[str, Any]:
    return next(r for r in document["runs"] if r["id"] == run_id)


# --- handshake ------------------------------------------------------------------------------


async def test_verification_handshake_answers_the_challenge_only_with_our_token(
    webhook: WebhookClient,
) -> None:
    ok = await webhook.verify(
        **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await webhook.verify(
        **{"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )
    assert wrong.status_code == 403
    no_mode = await webhook.verify(**{"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"})
    assert no_mode.status_code == 403


async def test_unknown_channel_is_404(webhook: WebhookClient) -> None:
    stranger = WebhookClient(webhook.http, "ch_nobody")
    assert (
        await stranger.verify(**{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN})
    ).status_code == 404
    assert (await stranger.post(fresh("text"))).status_code == 404


# --- refusals -------------------------------------------------------------------------------


async def test_bad_or_missing_signature_is_401_and_records_nothing(
    runtime: Runtime, webhook: WebhookClient
) -> None:
    body = fresh("text")
    wamid = message_of(body)["id"]
    assert (await webhook.post(body, secret="not-the-app-secret")).status_code == 401
    data = httpx.Request("POST", "/", json=body).content
    assert (await webhook.post_raw(data, signature=None)).status_code == 401
    assert (await webhook.post_raw(data, signature="sha256=" + "0" * 64)).status_code == 401
    assert await runtime.messages.get(scoped_id(WORKSPACE, wamid)) is None
    assert await contact(runtime) is None


async def test_malformed_bodies_are_400_with_a_log_line_never_500(
    webhook: WebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    from server.channels.whatsapp.signature import signature_for

    caplog.set_level(logging.WARNING, logger="server.web.whatsapp")
    for data in (
        b"{not json",
        b"[]",
        b'{"object": "page", "entry": []}',
        b'{"object": "whatsapp_business_account"}',
    ):
        response = await webhook.post_raw(data, signature=signature_for(data, APP_SECRET))
        assert response.status_code == 400, (data, response.text)
        assert response.json()["error"]
    body = fresh("text")
    del message_of(body)["from"]
    response = await webhook.post(body)
    assert response.status_code == 400
    assert "messages[0].from" in response.json()["error"]
    assert sum("refused" in r.getMessage() for r in caplog.records) >= 5


async def test_oversized_body_is_413(webhook: WebhookClient) -> None:
    from server.channels.whatsapp.signature import signature_for

    data = b'{"object": "whatsapp_business_account", "entry": [], "pad": "' + b"x" * 1_100_000 + b'"}'
    response = await webhook.post_raw(data, signature=signature_for(data, APP_SECRET))
    assert response.status_code == 413


# --- customer messages ----------------------------------------------------------------------


async def test_text_is_recorded_and_names_the_contact(runtime: Runtime, webhook: WebhookClient) -> None:
    body = fresh("text")
    wamid = message_of(body)["id"]
    response = await webhook.post(body)
    assert response.status_code == 200
    stored = await runtime.messages.get(scoped_id(WORKSPACE, wamid))
    assert stored is not None  # stored before the 200
    assert (stored["direction"], stored["kind"], stored["phone"], stored["channel_id"]) == (
        "in",
        "text",
        CUSTOMER,
        CHANNEL_ID,
    )
    assert stored["text"] == "Hola, ¿tenéis envío a Sevilla?"
    found = await eventually(lambda: contact(runtime), lambda c: c is not None and c.get("name"))
    assert found is not None and found["name"] == CUSTOMER_NAME
    assert found["last_inbound_at"] == stored["at"]
    await eventually(lambda: stored_and_applied(runtime, wamid), bool)


async def test_every_kind_is_recorded_and_only_answers_move_the_run(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient
) -> None:
    run_id = await open_window_and_start(runtime, gql, webhook)
    sent: dict[str, str] = {}
    for name in RECORDED_ONLY:
        body = fresh(name)
        sent[name] = message_of(body)["id"]
        assert (await webhook.post(body)).status_code == 200, name
    document = await settled(runtime)
    run = the_run(document, run_id)
    assert (run["status"], run["node"]) == ("waiting", "ask")
    assert not [s for s in run["steps"] if s["action"] in ("reply", "button")]
    # Each is noted on the waiting run (the customer is there) without choosing a path.
    noted = [s["detail"]["kind"] for s in run["steps"] if s["action"] == "reply_not_understood"]
    assert sorted(noted) == sorted(RECORDED_ONLY)
    for name, wamid in sent.items():
        stored = await runtime.messages.get(scoped_id(WORKSPACE, wamid))
        assert stored is not None and stored["kind"] == name, name
        assert await runtime.messages.applied(scoped_id(WORKSPACE, wamid)), name
    image = await runtime.messages.get(scoped_id(WORKSPACE, sent["image"]))
    assert image is not None and image["media"]["id"] == "2754859441498128"
    assert image["media"]["caption"] == "El paquete llegó así"
    document_message = await runtime.messages.get(scoped_id(WORKSPACE, sent["document"]))
    assert document_message is not None and document_message["media"]["filename"] == "factura-2041.pdf"
    location = await runtime.messages.get(scoped_id(WORKSPACE, sent["location"]))
    assert location is not None and location["location"]["name"] == "Tienda Centro"
    shared = await runtime.messages.get(scoped_id(WORKSPACE, sent["contacts"]))
    assert shared is not None and shared["contacts"][0]["name"]["formatted_name"] == "Lucía Pérez"
    assert document["last_inbound_at"] >= image["at"]

    assert (await webhook.post(fresh("interactive_button_reply"))).status_code == 200
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and the_run(c, run_id)["status"] == "completed"
    )
    assert "said-yes" in document["tags"]
    assert [s["detail"]["button"] for s in the_run(document, run_id)["steps"] if s["action"] == "button"] == [
        "yes"
    ]


@pytest.mark.parametrize(
    ("fixture_name", "tag"),
    [
        ("interactive_list_reply", "express"),
        ("template_button", "bought"),
        ("interactive_button_reply", "said-yes"),
    ],
)
async def test_each_button_flavour_takes_its_path(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient, fixture_name: str, tag: str
) -> None:
    run_id = await open_window_and_start(runtime, gql, webhook)
    assert (await webhook.post(fresh(fixture_name))).status_code == 200
    document = await eventually(
        lambda: contact(runtime), lambda c: c is not None and the_run(c, run_id)["status"] == "completed"
    )
    assert tag in document["tags"]


async def test_the_same_wamid_twice_is_applied_once(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient
) -> None:
    run_id = await open_window_and_start(runtime, gql, webhook)
    body = fresh("text")
    wamid = message_of(body)["id"]
    first, second = await asyncio.gather(webhook.post(body), webhook.post(body))
    assert (first.status_code, second.status_code) == (200, 200)
    assert (await webhook.post(body)).status_code == 200  # a later Meta retry
    document = await settled(runtime)
    run = the_run(document, run_id)
    # One reply moved ask -> ask_again; a second application would have ended the run.
    assert (run["status"], run["node"]) == ("waiting", "ask_again")
    assert [s["node"] for s in run["steps"] if s["action"] == "reply"] == ["ask"]
    assert "second-reply" not in document.get("tags", [])
    assert await stored_and_applied(runtime, wamid)


async def test_store_unreachable_is_503_then_metas_retry_is_stored(
    runtime: Runtime, webhook: WebhookClient
) -> None:
    """Meta retries what we do not acknowledge: nothing is lost while the store is away."""
    port = free_port()  # nothing listens there
    away: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )

    class Unreachable:
        def collection(self, name: str) -> Any:
            return away["konvo"][name]

    body = fresh("text")
    wamid = message_of(body)["id"]
    # The repository the webhook path holds now talks to a store that is not there.
    held = vars(runtime.messages)
    working = dict(held)
    held.update(vars(MessageRepository(Unreachable(), runtime.legacy_ids)))  # type: ignore[arg-type]
    try:
        response = await webhook.post(body)
    finally:
        held.clear()
        held.update(working)
        await away.close()
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert await runtime.messages.get(scoped_id(WORKSPACE, wamid)) is None
    assert (await webhook.post(body)).status_code == 200
    await eventually(lambda: stored_and_applied(runtime, wamid), bool)


async def test_a_number_of_another_app_is_not_ours(runtime: Runtime, webhook: WebhookClient) -> None:
    body = fresh("text")
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999999999"
    assert (await webhook.post(body)).status_code == 200
    assert await runtime.messages.get(scoped_id(WORKSPACE, message_of(body)["id"])) is None


async def test_replayed_through_a_real_uvicorn_server(runtime: Runtime, channel: dict[str, Any]) -> None:
    app = create_app(runtime.settings, runtime=runtime)  # the runtime is already started: no lifespan
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started), bool)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            client = WebhookClient(http, channel["_id"])
            challenge = await client.verify(
                **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}
            )
            assert (challenge.status_code, challenge.text) == (200, "42")
            body = fresh("interactive_button_reply")
            response = await client.post(body)
            assert response.status_code == 200
            assert (await client.post(body, secret="wrong")).status_code == 401
        stored = await runtime.messages.get(scoped_id(WORKSPACE, message_of(body)["id"]))
        assert stored is not None and (stored["kind"], stored["button_id"]) == ("button", "yes")
    finally:
        server.should_exit = True
        await serving
