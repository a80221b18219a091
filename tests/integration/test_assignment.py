"""Agents, teams and the handoff: who gets a conversation, and flows staying quiet meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from server.actors.events import TimerFired
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import flow, outbox, run_of, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.contacts import key_of
from tests.support.graphql import GraphQLClient, GraphQLErrors

AGENT = "mutation($e: String!, $n: String!) { createAgent(email: $e, name: $n) { id } }"
AWAY = "mutation($id: ID!) { setAgentAvailability(id: $id, available: false) { available } }"
TEAM = "mutation($n: String!, $a: [ID!], $p: TeamPolicy!) { createTeam(name: $n, agentIds: $a, policy: $p) { id name policy agents { email } } }"
ASSIGN = "mutation($p: String!, $a: ID!) { assignContact(phone: $p, agentId: $a) { assignedAgentId assignedAgent { email } assignment } }"
RELEASE = "mutation($p: String!) { releaseContact(phone: $p) { assignedAgentId assignedAgent { id } } }"
WHO = "query($p: String!) { contact(phone: $p) { assignedAgent { email } assignment } }"


async def agents(gql: GraphQLClient, *emails: str) -> dict[str, str]:
    return {e: (await gql(AGENT, e=e, n=e.split("@")[0]))["createAgent"]["id"] for e in emails}


async def who(gql: GraphQLClient, phone: str) -> str | None:
    agent = (await gql(WHO, p=phone))["contact"]["assignedAgent"]
    return agent and agent["email"]


def team_flow(name: str, team: str, strategy: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "route", "type": "assign", "team": team, "next": "tell"}
    if strategy:
        node["strategy"] = strategy
    return flow(
        name, "route", node, {"id": "tell", "type": "message", "text": "Te atiende una persona", "next": None}
    )


async def test_teams_round_robin_over_available_agents_only(gql: GraphQLClient) -> None:
    ids = await agents(gql, "ana@shop.example", "bea@shop.example", "carl@shop.example")
    team = (await gql(TEAM, n="ventas", a=list(ids.values()), p="ROUND_ROBIN"))["createTeam"]
    assert team["policy"] == "ROUND_ROBIN" and len(team["agents"]) == 3
    await gql(AWAY, id=ids["bea@shop.example"])
    flow_id = await publish(gql, team_flow("Sales", "ventas"))
    picked = []
    for n in range(4):
        phone = f"+3460090000{n}"
        await say(gql, phone, "hola")
        run = await start_with(gql, flow_id, phone)
        assert run["status"] == "COMPLETED"
        picked.append(await who(gql, phone))
    assert picked == ["ana@shop.example", "carl@shop.example"] * 2
    assignment = (await gql(WHO, p="+34600900000"))["contact"]["assignment"]
    assert assignment["source"] == "flow" and assignment["team"] == "ventas" and assignment["node"] == "route"


async def test_least_open_picks_the_agent_with_fewest_conversations(gql: GraphQLClient) -> None:
    ids = await agents(gql, "ana@shop.example", "bea@shop.example")
    await gql(TEAM, n="soporte", a=list(ids.values()), p="LEAST_OPEN")
    for phone in ("+34600901001", "+34600901002"):
        await gql(ASSIGN, p=phone, a=ids["ana@shop.example"])
    flow_id = await publish(gql, team_flow("Support", "soporte"))
    picked = []
    for phone in ("+34600901003", "+34600901004", "+34600901005"):
        await say(gql, phone, "hola")
        await start_with(gql, flow_id, phone)
        picked.append(await who(gql, phone))
    assert picked == ["bea@shop.example", "bea@shop.example", "ana@shop.example"]
    # A node may ask for another strategy than the team's policy.
    rr = await publish(gql, team_flow("Support RR", "soporte", strategy="round_robin"))
    await start_with(gql, rr, "+34600901006")
    assert await who(gql, "+34600901006") in ("ana@shop.example", "bea@shop.example")


async def test_no_agent_available_fails_the_run_with_a_clear_reason(gql: GraphQLClient) -> None:
    ids = await agents(gql, "ana@shop.example")
    await gql(AWAY, id=ids["ana@shop.example"])
    flow_id = await publish(
        gql,
        flow(
            "To Ana",
            "to_ana",
            {"id": "to_ana", "type": "assign", "agent": "ana@shop.example", "next": "tell"},
            {"id": "tell", "type": "message", "text": "Te atiende Ana", "next": None},
        ),
    )
    phone = "+34600902001"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    detail = await run_of(gql, run["id"])
    assert detail["status"] == "FAILED" and detail["endReason"] == "NO_AGENT_AVAILABLE"
    step = next(s for s in detail["steps"] if s["action"] == "not_assigned")
    assert step["outcome"] == "NO_AGENT_AVAILABLE" and "not available" in step["detail"]["why"]
    assert await who(gql, phone) is None and await outbox(gql, phone) == []
    with pytest.raises(GraphQLErrors) as caught:
        await gql(ASSIGN, p=phone, a=ids["ana@shop.example"])
    assert caught.value.codes == ["INVALID_INPUT"] and "not available" in caught.value.errors[0]["message"]
    with pytest.raises(GraphQLErrors) as team_caught:
        await gql(
            'mutation { assignContactToTeam(phone: "+34600902001", team: "nadie") { assignedAgentId } }'
        )
    assert team_caught.value.codes == ["INVALID_INPUT"]


async def test_handoff_the_flow_stays_quiet_until_release(gql: GraphQLClient, runtime: Runtime) -> None:
    ids = await agents(gql, "ana@shop.example")
    flow_id = await publish(
        gql,
        flow(
            "Ask",
            "ask",
            {
                "id": "ask",
                "type": "message",
                "text": "¿En qué te ayudamos?",
                "on_reply": "thanks",
                "no_reply": {"after": "1h", "next": "nudge"},
            },
            {"id": "thanks", "type": "message", "text": "¡Gracias!", "next": None},
            {"id": "nudge", "type": "message", "text": "¿Sigues ahí?", "next": None},
        ),
    )
    phone, other = "+34600903001", "+34600903002"
    for who_ in (phone, other):
        await say(gql, who_, "hola")
    run = await start_with(gql, flow_id, phone)
    assigned = (await gql(ASSIGN, p=phone, a="ana@shop.example"))["assignContact"]
    assert (
        assigned["assignedAgentId"] == ids["ana@shop.example"] and assigned["assignment"]["source"] == "api"
    )

    await say(gql, phone, "quiero hablar con alguien")  # the customer writes while Ana owns it
    assert [m["text"] for m in await outbox(gql, phone)] == ["¿En qué te ayudamos?"]
    assert (await run_of(gql, run["id"]))["status"] == "WAITING"
    unread = await gql("query($p: String!) { conversation(phone: $p) { unreadCount } }", p=phone)
    assert unread["conversation"]["unreadCount"] == 2

    assert (await gql(RELEASE, p=phone))["releaseContact"] == {"assignedAgentId": None, "assignedAgent": None}
    await say(gql, phone, "ya está, gracias")  # handed back: the waiting run takes it
    assert [m["text"] for m in await outbox(gql, phone)][-1] == "¡Gracias!"

    # A run waiting while the contact is assigned still times out as its node says.
    run2 = await start_with(gql, flow_id, other)
    await gql(ASSIGN, p=other, a="ana@shop.example")
    key = await key_of(runtime, WORKSPACE, other)
    document = await runtime.contacts.load(key)
    assert document is not None and runtime.actors is not None
    await runtime.actors.ask(key, TimerFired(document["timers"][0]["id"]))
    assert (await run_of(gql, run2["id"]))["status"] == "COMPLETED"
    assert [m["text"] for m in await outbox(gql, other)][-1] == "¿Sigues ahí?"


async def test_teams_and_agents_crud_with_clear_rules(gql: GraphQLClient) -> None:
    ids = await agents(gql, "ana@shop.example", "bea@shop.example")
    team = (await gql(TEAM, n="ventas", a=[ids["ana@shop.example"]], p="ROUND_ROBIN"))["createTeam"]
    with pytest.raises(GraphQLErrors) as dup:
        await gql(TEAM, n="ventas", a=[], p="LEAST_OPEN")
    assert dup.value.codes == ["CONFLICT"]
    updated = await gql(
        'mutation($id: ID!, $a: [ID!]) { updateTeam(id: $id, name: "ventas-es", agentIds: $a, policy: LEAST_OPEN) '
        "{ name policy agents { email teams } } }",
        id=team["id"],
        a=[ids["bea@shop.example"]],
    )
    assert updated["updateTeam"] == {
        "name": "ventas-es",
        "policy": "LEAST_OPEN",
        "agents": [{"email": "bea@shop.example", "teams": ["ventas-es"]}],
    }
    await publish(gql, team_flow("Sales", "ventas-es"))
    with pytest.raises(GraphQLErrors) as used:
        await gql("mutation($id: ID!) { deleteTeam(id: $id) }", id=team["id"])
    assert used.value.codes == ["CONFLICT"] and "'Sales'" in used.value.errors[0]["message"]

    agent = await gql(
        'mutation($id: ID!) { updateAgent(id: $id, name: "Ana García", teams: ["vip"]) { name teams } }',
        id=ids["ana@shop.example"],
    )
    assert agent["updateAgent"] == {"name": "Ana García", "teams": ["vip"]}
    assert {t["name"] for t in (await gql("{ teams { name } }"))["teams"]} == {"ventas-es", "vip"}
    await gql(ASSIGN, p="+34600904001", a=ids["ana@shop.example"])
    with pytest.raises(GraphQLErrors) as owns:
        await gql("mutation($id: ID!) { deleteAgent(id: $id) }", id=ids["ana@shop.example"])
    assert owns.value.codes == ["CONFLICT"] and "release or reassign" in owns.value.errors[0]["message"]
    await gql(RELEASE, p="+34600904001")
    assert (await gql("mutation($id: ID!) { deleteAgent(id: $id) }", id=ids["ana@shop.example"]))[
        "deleteAgent"
    ]
    assert [a["email"] for a in (await gql("{ agents { email } }"))["agents"]] == ["bea@shop.example"]
