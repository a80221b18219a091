"""A message sent with its provider id leaves the stored outbox with the contact's next commit.

Issue 19: every answered webhook wrote its contact twice, the turn's commit and then a ``$pull`` of
the message just sent. The record of the sent message (its ``_id`` is the outbox id, with the
wamid) is what a redelivery looks up before sending, so the stored outbox may go on listing the
message until the next commit: a reloaded actor, recovery and the next turn never send it again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from server.actors.events import AgentMessage, Redeliver
from server.actors.recovery import recover
from server.config import Settings
from server.ids import new_id
from server.operations import inbox
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_quiet_hours import DAY, at, nights_are_quiet, one_message
from tests.integration.test_typing_indicator import ECHO, answers
from tests.integration.test_whatsapp_webhook import (  # noqa: F401 - fixtures
    channel_fixture,
    contact,
    fresh,
    graph_fixture,
    webhook_fixture,
)
from tests.support.clock import ShiftedClock
from tests.support.contacts import key_of
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp import connect_fake
from tests.support.whatsapp_webhooks import CUSTOMER, WebhookClient, message_of

PHONE = "+34600000931"
FLOW = {
    "name": "Ask and thank",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "¿Te interesa?", "on_reply": "thanks"},
        {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
    ],
}


@pytest.fixture
def fast_settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"store_stats": True})


async def say(gql: GraphQLClient, text: str) -> None:
    await gql("mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }", p=PHONE, t=text)


def sent(fake: GraphApiFake) -> list[dict[str, Any]]:
    return [body for body in fake.sent() if body["to"] == PHONE.lstrip("+")]


async def sent_now(fake: GraphApiFake) -> list[dict[str, Any]]:
    return sent(fake)


async def run_status(runtime: Runtime, run_id: str) -> str | None:
    projected = await runtime.runs.get(WORKSPACE, run_id)
    return None if projected is None else projected["status"]


async def passivated(runtime: Runtime) -> int:
    """Drop the actors whose turns are over: each one's next turn starts from the stored document."""
    assert runtime.actors is not None
    return runtime.actors.passivate_idle(0)


def contact_writes(runtime: Runtime) -> int:
    assert runtime.database.stats is not None
    return runtime.database.stats.written_by_collection["contacts"]


async def answered(runtime: Runtime, gql: GraphQLClient, fake: GraphApiFake) -> tuple[str, int]:
    """The flow asked, the customer answered and was thanked; (run id, contact writes of the answer)."""
    await connect_fake(runtime, WORKSPACE, fake)
    await say(gql, "hola")  # opens the customer-service window
    flow_id = await publish(gql, FLOW)
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=PHONE
    )
    run_id = data["startFlow"]["id"]
    await eventually(lambda: run_status(runtime, run_id), lambda status: status == "waiting")
    await eventually(lambda: sent_now(fake), lambda bodies: len(bodies) == 1)
    before = contact_writes(runtime)
    await say(gql, "sí")
    # The run's projection is written after the sends of its turn: the turn's writes are all done.
    await eventually(lambda: run_status(runtime, run_id), lambda status: status == "completed")
    assert [body["text"]["body"] for body in sent(fake)] == ["¿Te interesa?", "¡Gracias!"]
    return run_id, contact_writes(runtime) - before


async def test_an_answer_sent_writes_its_contact_once(
    runtime: Runtime, gql: GraphQLClient, api_key: str, fake: GraphApiFake
) -> None:
    _, writes = await answered(runtime, gql, fake)
    assert writes == 1  # the turn's commit; the sent "thanks" leaves the outbox with the next one
    stored = await runtime.contacts.load(await key_of(runtime, WORKSPACE, PHONE))
    assert stored is not None
    listed = [message["id"] for message in stored.get("outbox", [])]
    assert await runtime.messages.sent_messages(listed) == set(listed)  # whatever it lists went


async def test_what_a_stored_outbox_still_lists_is_never_sent_again(
    runtime: Runtime, gql: GraphQLClient, api_key: str, fake: GraphApiFake
) -> None:
    await answered(runtime, gql, fake)
    key = await key_of(runtime, WORKSPACE, PHONE)
    await eventually(
        lambda: passivated(runtime), lambda dropped: dropped >= 1
    )  # the next turn loads the store's copy
    report = await recover(runtime.contacts, runtime.messages, runtime.timers, runtime.actors, runtime.clock)
    assert report.outboxes == 0  # nothing unsent: no redelivery asked for
    await say(gql, "gracias")  # a turn of the reloaded actor
    stored = await eventually(
        lambda: runtime.contacts.load(key), lambda doc: doc is not None and not doc.get("outbox")
    )
    assert stored is not None
    assert len(sent(fake)) == 2  # asked and thanked once each, nothing sent again


async def test_a_read_receipt_before_a_sent_answer_waits_for_the_next_commit_and_is_never_repeated(
    runtime: Runtime, gql: GraphQLClient, webhook: WebhookClient, graph: GraphApiFake
) -> None:
    """The typing indicator is on by default: the answer's turn still writes its contact once."""
    assert (await webhook.post(fresh("text"))).status_code == 200  # opens the window, starts nothing
    await eventually(lambda: contact(runtime), lambda c: c is not None and c.get("last_inbound_at"))
    flow_id = await publish(gql, ECHO)
    data = await gql(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=CUSTOMER
    )
    run_id = data["startFlow"]["id"]
    await eventually(lambda: graph_answers(graph), lambda found: found == [("text", "Recibido")])
    await eventually(lambda: run_status(runtime, run_id), lambda status: status == "waiting")
    body = fresh("text")
    wamid = message_of(body)["id"]
    before = contact_writes(runtime)
    projected = (await runtime.runs.get(WORKSPACE, run_id) or {}).get("contact_version")
    assert (await webhook.post(body)).status_code == 200
    expected = [("text", "Recibido"), ("read", (wamid, {"type": "text"})), ("text", "Recibido")]
    await eventually(lambda: graph_answers(graph), lambda found: found == expected)
    # The run's projection follows the sends of the turn: the turn's writes are all done then.
    await eventually(
        lambda: runtime.runs.get(WORKSPACE, run_id),
        lambda run: run is not None and run["contact_version"] != projected,
    )
    assert contact_writes(runtime) - before == 1
    stored = await contact(runtime)
    assert stored is not None and [m.get("kind") for m in stored["outbox"]] == ["typing", "text"]
    conversation = await inbox.messages(runtime.services, stored, 10)  # what an agent sees
    assert [m["status"] for m in conversation if m["direction"] == "out"] == ["accepted", "accepted"]

    await eventually(
        lambda: passivated(runtime), lambda dropped: dropped >= 1
    )  # the next turn loads the store's copy
    report = await recover(runtime.contacts, runtime.messages, runtime.timers, runtime.actors, runtime.clock)
    assert report.outboxes == 0
    then = fresh("text")
    assert (await webhook.post(then)).status_code == 200
    again = [*expected, ("read", (message_of(then)["id"], {"type": "text"})), ("text", "Recibido")]
    await eventually(lambda: graph_answers(graph), lambda found: found == again)
    assert answers(graph) == again  # the earlier receipt was not repeated


async def graph_answers(graph: GraphApiFake) -> list[tuple[str, Any]]:
    return answers(graph)


async def test_a_sent_message_a_cut_short_reload_left_in_the_actors_copy_is_not_sent_again(
    runtime: Runtime, gql: GraphQLClient, api_key: str, fake: GraphApiFake, clock: ShiftedClock
) -> None:
    """The stored outbox lists a promo held for the night and, after it, an agent's message sent at
    once (listed until the next commit). In the morning a reloaded actor's delivery stops at the
    promo (Meta down for a moment), so its copy still lists the agent's message when the wake
    timer's turn commits: that commit's delivery looks it up (it was not queued by the turn) and
    does not send it again."""
    await connect_fake(runtime, WORKSPACE, fake)
    await nights_are_quiet(gql)
    promo = await publish(gql, one_message("Night promo", "¡Ofertas!"))
    at(clock, DAY, 22, 30)
    await say(gql, "hola")
    at(clock, DAY, 23, 30)
    await gql("mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=promo, p=PHONE)
    key = await key_of(runtime, WORKSPACE, PHONE)
    assert runtime.actors is not None
    await runtime.actors.ask(key, AgentMessage(new_id("agent"), "Te escribo yo"))
    assert [body["text"]["body"] for body in sent(fake)] == ["Te escribo yo"]
    stored = await runtime.contacts.load(key)
    assert stored is not None and [m["text"] for m in stored["outbox"]] == ["¡Ofertas!", "Te escribo yo"]

    await eventually(lambda: passivated(runtime), lambda dropped: dropped >= 1)
    fake.server_errors(times=5)  # every attempt of the reload's first send
    at(clock, DAY + timedelta(days=1), 9, 5)  # the promo's wake timer fires
    await eventually(lambda: sent_now(fake), lambda bodies: len(bodies) >= 2)
    await runtime.actors.ask(key, Redeliver(new_id("barrier")))  # the wake turn's effects are done
    assert sum(1 for r in fake.requests if r.fault == "2") == 5  # the reload's send gave up
    assert [body["text"]["body"] for body in sent(fake)] == ["Te escribo yo", "¡Ofertas!"]
