"""Issue 15, findings 8 and 9 and the /metrics token: deep JSON refused with 400 on /graphql and
/hooks (it was a 500), an AGENT key writes only as its own agent, /metrics behind a token."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from server.runtime import Runtime
from server.web.app import create_app
from tests.integration.conftest import client_for, publish
from tests.integration.test_webhook_triggers import (
    MAPPING,
    ORDER,
    ORDER_FLOW,
    make_trigger,
    post,
    signed,
    signed_headers,
)
from tests.support.graphql import GraphQLClient, GraphQLErrors

DEEP = 200_000


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def test_deep_json_is_a_400_on_graphql(gql: GraphQLClient, api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    deep = '{"query": "{ workspace { id } }", "variables": {"v": ' + "[" * DEEP + "]" * DEEP + "}}"
    posted = await gql.http.post("/graphql", content=deep, headers=auth)
    assert posted.status_code == 400 and codes(posted.json()) == ["BAD_REQUEST"]
    assert "nested deeper than 64" in posted.json()["errors"][0]["message"]
    variables = "[" * 5000 + "]" * 5000
    got = await gql.http.get(
        "/graphql", params={"query": "{ workspace { id } }", "variables": variables}, headers=auth
    )
    assert got.status_code == 400 and codes(got.json()) == ["BAD_REQUEST"]
    # Nesting within the limit still works.
    shallow = {"query": "{ __typename }", "variables": {"v": json.loads("[" * 60 + "]" * 60)}}
    assert (await gql.http.post("/graphql", json=shallow, headers=auth)).json() == {
        "data": {"__typename": "Query"}
    }


async def test_deep_json_is_a_400_on_a_signed_hook(gql: GraphQLClient) -> None:
    trigger = await make_trigger(gql, await publish(gql, ORDER_FLOW), MAPPING)
    within = {**ORDER, "extra": json.loads("[" * 60 + "]" * 60)}
    assert (await post(gql.http, trigger, *signed(trigger, within))).status_code == 202
    # Too deep for Python to build and dump: the body is written, and signed, as bytes.
    body = json.dumps(ORDER).encode()[:-1] + b', "extra": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    headers = signed_headers(trigger["secret"], body)
    refused = await post(gql.http, trigger, body, headers)
    assert refused.status_code == 400 and "nested deeper than 64" in refused.text, refused.text


SEND = 'mutation($p: String!, $a: ID) { sendAgentMessage(phone: $p, text: "hola", agentId: $a) { id } }'


async def test_an_agent_key_sends_only_as_its_own_agent(runtime: Runtime, gql: GraphQLClient) -> None:
    ana, bea = [
        (
            await gql(
                "mutation($e: String!, $n: String!) { createAgent(email: $e, name: $n) { id } }", e=e, n=n
            )
        )["createAgent"]["id"]
        for e, n in (("ana@shop.example", "Ana"), ("bea@shop.example", "Bea"))
    ]
    phone = "+34600444555"
    await gql('mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    create = 'mutation($a: ID) { createApiKey(name: "inbox", role: AGENT, agentId: $a) { key } }'
    ana_key = (await gql(create, a=ana))["createApiKey"]["key"]
    untied_key = (await gql(create, a=None))["createApiKey"]["key"]
    as_ana, untied = client_for(runtime, ana_key), client_for(runtime, untied_key)
    try:
        for client, agent in ((as_ana, bea), (as_ana, "bea@shop.example"), (as_ana, "nobody"), (untied, bea)):
            with pytest.raises(GraphQLErrors) as refused:
                await client(SEND, p=phone, a=agent)
            assert refused.value.codes == ["FORBIDDEN"], agent
        for agent in (None, ana, "ana@shop.example"):
            await as_ana(SEND, p=phone, a=agent)
        await gql(SEND, p=phone, a=bea)  # an ADMIN key may still write for any agent
    finally:
        await as_ana.http.aclose()
        await untied.http.aclose()
    conversation = "query($p: String!) { conversation(phone: $p) { messages { sender agentId } } }"
    written = (await gql(conversation, p=phone))["conversation"]["messages"]
    assert [m["agentId"] for m in written if m["sender"] == "AGENT"] == [ana, ana, ana, bea]


async def test_metrics_can_be_behind_a_token(runtime: Runtime) -> None:
    guarded = runtime.settings.model_copy(update={"metrics_token": "s3cret-scraper"})
    app = create_app(guarded, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        right = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-scraper"})
        assert right.status_code == 200 and "konvo_websocket_connections" in right.text
        assert (await http.get("/healthz")).status_code == 200  # health checks stay open
    assert runtime.settings.metrics_token is None  # unset: open, for a scraper on a private network
    app = create_app(runtime.settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 200
