"""The agents' inbox: conversations, messages in and out, agent replies, unread counts, live updates."""

from __future__ import annotations

from typing import Any

import pytest

from server.runtime import Runtime
from tests.integration.conftest import publish
from tests.integration.test_nodes import flow, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.graphql import GraphQLClient, GraphQLErrors
from tests.support.live import live_server
from tests.support.ws import GraphQLWebSocket

CONVERSATIONS = """query($first: Int, $after: String, $to: ID) {
  conversations(first: $first, after: $after, assignedTo: $to) {
    edges { cursor node { phone unreadCount windowOpen supportTags assignedAgent { email } } }
    pageInfo { hasNextPage endCursor } } }"""
CONVERSATION = """query($p: String!) { conversation(phone: $p) {
  phone unreadCount windowOpen supportTags assignedAgent { email }
  messages { direction sender kind text status agentId runId } } }"""
SEND = "mutation($p: String!, $t: String!) { sendAgentMessage(phone: $p, text: $t) { id text status } }"


async def conversation(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(CONVERSATION, p=phone))["conversation"]


async def test_a_conversation_shows_who_wrote_what_and_its_status(gql: GraphQLClient) -> None:
    await gql('mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }')
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createTag(name: "newsletter", kind: MARKETING) { id } }')
    flow_id = await publish(
        gql, flow("Hello", "hi", {"id": "hi", "type": "message", "text": "¡Hola!", "next": None})
    )
    phone = "+34600950001"
    await say(gql, phone, "buenas")
    await start_with(gql, flow_id, phone)
    for tag in ("vip", "newsletter"):
        await gql(
            "mutation($p: String!, $t: String!) { tagContact(phone: $p, tag: $t) { tags } }", p=phone, t=tag
        )
    await gql(
        'mutation($p: String!) { assignContact(phone: $p, agentId: "ana@shop.example") { id } }', p=phone
    )
    sent = (await gql(SEND, p=phone, t="Soy Ana, ¿en qué te ayudo?"))["sendAgentMessage"]
    assert sent["status"] == "sent" and sent["text"] == "Soy Ana, ¿en qué te ayudo?"

    shown = await conversation(gql, phone)
    assert shown["supportTags"] == ["vip"]  # marketing tags are not shown in the inbox
    assert shown["assignedAgent"] == {"email": "ana@shop.example"} and shown["windowOpen"] is True
    assert [(m["direction"], m["sender"], m["text"], m["status"]) for m in shown["messages"]] == [
        ("IN", "CUSTOMER", "buenas", "received"),
        ("OUT", "FLOW", "¡Hola!", "sent"),
        ("OUT", "AGENT", "Soy Ana, ¿en qué te ayudo?", "sent"),
    ]
    assert shown["messages"][1]["runId"] and shown["messages"][2]["agentId"]
    assert shown["unreadCount"] == 0  # answering reads the conversation


async def test_agent_messages_are_refused_outside_the_window(gql: GraphQLClient) -> None:
    with pytest.raises(GraphQLErrors) as caught:
        await gql(SEND, p="+34600950002", t="Hola")  # the customer never wrote
    assert caught.value.codes == ["WINDOW_CLOSED"] and "24-hour" in caught.value.errors[0]["message"]
    with pytest.raises(GraphQLErrors) as empty:
        await gql(SEND, p="+34600950002", t="   ")
    assert empty.value.codes == ["INVALID_INPUT"]


async def test_unread_counts_and_mark_read(gql: GraphQLClient) -> None:
    phone = "+34600950003"
    for text in ("hola", "¿hay alguien?", "holaaa"):
        await say(gql, phone, text)
    assert (await conversation(gql, phone))["unreadCount"] == 3
    read = await gql("mutation($p: String!) { markConversationRead(phone: $p) { unreadCount } }", p=phone)
    assert read["markConversationRead"]["unreadCount"] == 0
    with pytest.raises(GraphQLErrors) as caught:
        await gql('mutation { markConversationRead(phone: "+34600950099") { unreadCount } }')
    assert caught.value.codes == ["NOT_FOUND"]


async def test_conversations_newest_first_paginated_and_filtered(gql: GraphQLClient) -> None:
    ana = (await gql('mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }'))[
        "createAgent"
    ]["id"]
    phones = [f"+3460095010{n}" for n in range(5)]
    for phone in phones:
        await say(gql, phone, "hola")
    await gql(
        'mutation($p: String!) { assignContact(phone: $p, agentId: "ana@shop.example") { id } }', p=phones[1]
    )
    seen: list[str] = []
    after = None
    while True:
        page = (await gql(CONVERSATIONS, first=2, after=after))["conversations"]
        seen += [e["node"]["phone"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == phones[::-1]  # latest message first (ties: by contact id, so never skipped or repeated)
    mine = (await gql(CONVERSATIONS, to=ana))["conversations"]["edges"]
    assert [e["node"]["phone"] for e in mine] == [phones[1]]
    assert mine[0]["node"]["assignedAgent"] == {"email": "ana@shop.example"}
    with pytest.raises(GraphQLErrors) as bad:
        await gql(CONVERSATIONS, after="nonsense")
    assert bad.value.codes == ["INVALID_INPUT"]


async def test_inbox_updated_streams_conversation_changes(
    runtime: Runtime, api_key: str, gql: GraphQLClient
) -> None:
    watch = "subscription { inboxUpdated { phone unreadCount messages(last: 1) { sender text } } }"
    async with live_server(runtime) as (host, _), GraphQLWebSocket(f"ws://{host}/graphql", api_key) as ws:
        await ws.subscribe("inbox", watch)
        await say(gql, "+34600950201", "necesito ayuda")
        update = (await ws.next_data("inbox"))["inboxUpdated"]
        assert update == {
            "phone": "+34600950201",
            "unreadCount": 1,
            "messages": [{"sender": "CUSTOMER", "text": "necesito ayuda"}],
        }
        await gql(SEND, p="+34600950201", t="Aquí estamos")
        update = (await ws.next_data("inbox"))["inboxUpdated"]
        assert update["unreadCount"] == 0
        assert update["messages"] == [{"sender": "AGENT", "text": "Aquí estamos"}]
