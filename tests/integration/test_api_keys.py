"""API keys: created per workspace (shown once, stored hashed), listed, revoked; roles applied."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from server.runtime import Runtime
from server.store.workspaces import hash_key
from tests.integration.conftest import WORKSPACE, client_for, publish
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient, GraphQLErrors

CREATE = """mutation($n: String!, $r: Role!, $a: ID) {
  createApiKey(name: $n, role: $r, agentId: $a) { key apiKey { id name role agentId hint revokedAt } } }"""


async def test_a_created_key_works_once_shown_and_is_stored_only_hashed(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    created = (await gql(CREATE, n="dashboard", r="ADMIN"))["createApiKey"]
    key = created["key"]
    assert key.startswith("konvo_") and created["apiKey"]["hint"] == key[:10]
    assert created["apiKey"]["role"] == "ADMIN" and created["apiKey"]["revokedAt"] is None

    client = client_for(runtime, key)
    try:
        assert (await client("{ currentApiKey { id name } }"))["currentApiKey"] == {
            "id": created["apiKey"]["id"],
            "name": "dashboard",
        }
    finally:
        await client.http.aclose()

    listed = (await gql("{ apiKeys { id name role hint } }"))["apiKeys"]
    assert created["apiKey"]["id"] in {k["id"] for k in listed}
    assert key not in str(listed)

    mongo: AsyncMongoClient = AsyncMongoClient(runtime.settings.mongodb_uri)
    try:
        stored = await mongo[runtime.settings.mongodb_db]["api_keys"].find({}).to_list()
    finally:
        await mongo.close()
    assert key not in str(stored)
    assert hash_key(key) in {d["_id"] for d in stored}


async def test_a_revoked_key_stops_working_at_once(runtime: Runtime, gql: GraphQLClient) -> None:
    created = (await gql(CREATE, n="temp", r="AGENT"))["createApiKey"]
    client = client_for(runtime, created["key"])
    try:
        assert (await client("{ workspace { id } }"))["workspace"]["id"] == WORKSPACE
        revoked = (
            await gql(
                "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }", id=created["apiKey"]["id"]
            )
        )["revokeApiKey"]
        assert revoked["revokedAt"] is not None
        with pytest.raises(GraphQLErrors) as refused:
            await client("{ workspace { id } }")
        assert refused.value.codes == ["UNAUTHENTICATED"]
    finally:
        await client.http.aclose()
    live = (await gql("{ apiKeys { id } }"))["apiKeys"]
    assert created["apiKey"]["id"] not in {k["id"] for k in live}
    everything = (await gql("{ apiKeys(includeRevoked: true) { id revokedAt } }"))["apiKeys"]
    assert created["apiKey"]["id"] in {k["id"] for k in everything}


async def test_the_last_admin_key_cannot_be_revoked(gql: GraphQLClient) -> None:
    own = (await gql("{ currentApiKey { id } }"))["currentApiKey"]["id"]
    with pytest.raises(GraphQLErrors) as refused:
        await gql("mutation($id: ID!) { revokeApiKey(id: $id) { id } }", id=own)
    assert refused.value.codes == ["CONFLICT"]


async def test_agent_keys_are_tied_to_an_existing_agent_only(gql: GraphQLClient) -> None:
    agent_id = (await gql('mutation { createAgent(email: "ana@shop.example", name: "Ana") { id } }'))[
        "createAgent"
    ]["id"]
    tied = (await gql(CREATE, n="ana's inbox", r="AGENT", a=agent_id))["createApiKey"]["apiKey"]
    assert tied["agentId"] == agent_id
    for role, agent, code in (("AGENT", "agent_missing", "NOT_FOUND"), ("ADMIN", agent_id, "INVALID_INPUT")):
        with pytest.raises(GraphQLErrors) as refused:
            await gql(CREATE, n="x", r=role, a=agent)
        assert refused.value.codes == [code]
    with pytest.raises(GraphQLErrors) as refused:
        await gql(CREATE, n="  ", r="AGENT")
    assert refused.value.codes == ["INVALID_INPUT"]


async def test_an_agent_reads_contacts_but_not_flows_nested_either(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    key = (await gql(CREATE, n="agent", r="AGENT"))["createApiKey"]["key"]
    agent = client_for(runtime, key)
    try:
        await gql('mutation { sandboxInbound(phone: "+34600000001", text: "hola") }')
        flow_id = await publish(gql, skeleton_flow("Agent-hidden flow"))
        started = await gql(
            'mutation($f: ID!) { startFlow(flowId: $f, phone: "+34600000001") { id } }', f=flow_id
        )
        run_id = started["startFlow"]["id"]
        contact = (await agent('{ contact(phone: "+34600000001") { phone runs { id } } }'))["contact"]
        assert contact["phone"] == "+34600000001"
        assert [r["id"] for r in contact["runs"]] == [run_id]  # the nested field below is really resolved
        body = await agent.raw("{ runs { edges { node { id flowName flow { name } } } } }")
        errors = body.get("errors") or []
        assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], body
        assert errors[0]["path"][-1] == "flow"
        assert [edge["node"]["flow"] for edge in body["data"]["runs"]["edges"]] == [None]
        body = await agent.raw('{ contact(phone: "+34600000001") { runs { id flow { name draft } } } }')
        assert [e["extensions"]["code"] for e in body.get("errors") or []] == ["FORBIDDEN"], body
        for query in (
            "{ flows { id } }",
            "{ apiKeys { id } }",
            'mutation { createTag(name: "x", kind: SUPPORT) { id } }',
            'mutation { sandboxInbound(phone: "+34600000001", text: "fake customer") }',
        ):
            with pytest.raises(GraphQLErrors) as refused:
                await agent(query)
            assert refused.value.codes == ["FORBIDDEN"], query
            assert "an ADMIN key is needed" in refused.value.errors[0]["message"], query  # says what to use
    finally:
        await agent.http.aclose()


async def test_requests_without_a_valid_key_are_unauthenticated(runtime: Runtime) -> None:
    # The message says what to fix: send a key, or the key sent is not one.
    for key, why in ((None, "Authorization: Bearer <key>"), ("konvo_not-a-key", "unknown or revoked")):
        client = client_for(runtime, key)
        try:
            for query in ("{ workspace { id } }", "{ flows { id } }", "{ apiKeys { id } }"):
                with pytest.raises(GraphQLErrors) as refused:
                    await client(query)
                assert refused.value.codes == ["UNAUTHENTICATED"], (key, query)
                assert why in refused.value.errors[0]["message"], (key, query)
        finally:
            await client.http.aclose()
