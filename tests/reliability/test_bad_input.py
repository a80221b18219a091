"""Bad input to a real server process: malformed and oversized webhooks and GraphQL documents,
invalid flows, wrong types, unknown ids, huge pages. Each gets a clear error (a 4xx, or a GraphQL
error with a code), never a 500, and the store is the same afterwards (snapshot before/after)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from server.channels.whatsapp.signature import HEADER, signature_for
from tests.reliability.conftest import Api, publish
from tests.reliability.flows import wait_and_timer_flow
from tests.reliability.webhooks import CHANNEL_ID, add_channel, inbound_text
from tests.support.catalog import ensure_catalog
from tests.support.graph_api_fake import GraphApiFake
from tests.support.whatsapp_webhooks import APP_SECRET

pytestmark = pytest.mark.e2e


async def snapshot(mongo: AsyncMongoClient[dict[str, Any]], db: str) -> dict[str, list[Any]]:
    found = {}
    for name in sorted(await mongo[db].list_collection_names()):
        found[name] = await mongo[db][name].find().sort("_id", 1).to_list()
    return found


def signed(data: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", HEADER: signature_for(data, APP_SECRET)}


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def webhook_cases() -> list[tuple[str, str, bytes, dict[str, str], set[int]]]:
    _, good = inbound_text("34600999000", "hola")
    good_bytes = json.dumps(good).encode()
    not_meta = json.dumps({"object": "page", "entry": "nope"}).encode()
    missing = json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": 7}]}]}
    ).encode()
    wrong_types = json.dumps(
        {
            **good,
            "entry": [
                {
                    "id": 5,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messages": [
                                    {"id": 123, "from": ["x"], "type": "text", "text": "not an object"}
                                ],
                                "metadata": "nope",
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    huge = b'{"object": "whatsapp_business_account", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    path = f"/webhooks/whatsapp/{CHANNEL_ID}"
    return [
        ("not json", path, b"{not json", signed(b"{not json"), {400}),
        ("not a whatsapp webhook", path, not_meta, signed(not_meta), {400}),
        ("missing fields", path, missing, signed(missing), {400}),
        ("wrong types", path, wrong_types, signed(wrong_types), {400}),
        ("deeply nested", path, nested(100_000), signed(nested(100_000)), {400}),
        ("oversized", path, huge, signed(huge), {413}),
        ("bad signature", path, good_bytes, {HEADER: "sha256=" + "0" * 64}, {401}),
        ("no signature", path, good_bytes, {"Content-Type": "application/json"}, {401}),
        ("unknown channel", "/webhooks/whatsapp/ch_nope", good_bytes, signed(good_bytes), {404}),
        ("empty body", path, b"", signed(b""), {400}),
    ]


def graphql_cases(flow_id: str, run_id: str) -> list[tuple[str, Any]]:
    deep = "query { " + "flows { " * 40 + "id" + " }" * 40 + " }"
    aliases = "query { " + " ".join(f"a{n}: flows {{ id }}" for n in range(200)) + " }"
    tokens = "query { " + " ".join("__typename" for _ in range(5000)) + " }"
    bad_flow = {"name": "Broken", "start": "nowhere", "nodes": [{"id": "x", "type": "warp", "next": "y"}]}
    return [
        ("syntax error", {"query": "query { flows { id "}),
        ("unknown field", {"query": "query { noSuchThing }"}),
        ("too deep", {"query": deep}),
        ("too many aliases", {"query": aliases}),
        ("too many tokens", {"query": tokens}),
        ("oversized document", {"query": "query { flows { id } }" + " " * 1_100_000}),
        (
            "wrong variable type",
            {
                "query": "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }",
                "variables": {"f": ["x"], "p": 5},
            },
        ),
        (
            "missing variable",
            {
                "query": "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }",
                "variables": {},
            },
        ),
        (
            "invalid flow",
            {
                "query": "mutation($d: JSON!) { importFlow(definition: $d) { id } }",
                "variables": {"d": bad_flow},
            },
        ),
        (
            "flow not an object",
            {
                "query": "mutation($d: JSON!) { importFlow(definition: $d) { id } }",
                "variables": {"d": [1, 2, 3]},
            },
        ),
        (
            "unknown flow id",
            {"query": 'mutation { startFlow(flowId: "flw_nope", phone: "+34600999111") { id } }'},
        ),
        ("unknown run id", {"query": 'mutation { stopRun(id: "run_nope") { id } }'}),
        ("publish unknown flow", {"query": 'mutation { publishFlow(id: "flw_nope") { status } }'}),
        (
            "bad phone",
            {"query": f'mutation {{ startFlow(flowId: "{flow_id}", phone: "not a phone") {{ id }} }}'},
        ),
        ("huge page", {"query": "query { runs(first: 100000000) { edges { cursor } } }"}),
        ("negative page", {"query": "query { runs(first: -1) { edges { cursor } } }"}),
        (
            "garbage cursor",
            {"query": 'query { runs(first: 5, after: "%%%not-a-cursor") { edges { cursor } } }'},
        ),
        ("int overflow", {"query": "query { runs(first: 99999999999999999999) { edges { cursor } } }"}),
        ("say nothing", {"query": 'mutation { sandboxInbound(phone: "+34600999222") }'}),
    ]


async def test_bad_input_gets_clear_errors_and_changes_nothing(
    cluster_factory: Any, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    cluster = cluster_factory()
    cluster.start()
    api = Api(cluster)
    graph = await GraphApiFake().start()
    try:
        await add_channel(mongo, cluster.db_name, graph)
        gql = api.gql(0)
        definition = wait_and_timer_flow()
        await ensure_catalog(gql, definition)
        flow_id = await publish(gql, definition)
        await gql('mutation { sandboxInbound(phone: "+34600999333", text: "hola") }')
        run = await gql(f'mutation {{ startFlow(flowId: "{flow_id}", phone: "+34600999333") {{ id }} }}')
        run_id = run["startFlow"]["id"]
        await gql(f'mutation {{ stopRun(id: "{run_id}") {{ id }} }}')
        before = await snapshot(mongo, cluster.db_name)
        seen: list[str] = []
        problems: list[str] = []
        async with httpx.AsyncClient(base_url=cluster.url(0), timeout=30) as http:
            for name, path, data, headers, expected in webhook_cases():
                response = await http.post(path, content=data, headers=headers)
                seen.append(f"{name}:{response.status_code}")
                if response.status_code not in expected:
                    problems.append(f"webhook {name}: {response.status_code} {response.text[:200]}")
            auth = {"Authorization": f"Bearer {cluster.api_key}"}
            for name, body in graphql_cases(flow_id, run_id):
                response = await http.post("/graphql", json=body, headers=auth)
                seen.append(f"{name}:{response.status_code}")
                if response.status_code >= 500:
                    problems.append(f"graphql {name}: {response.status_code} {response.text[:200]}")
                    continue
                if response.status_code == 413:
                    continue
                payload = response.json()
                errors = payload.get("errors") or []
                if not errors or not all(e.get("message") for e in errors):
                    problems.append(f"graphql {name}: no error: {str(payload)[:200]}")
                elif any(
                    e.get("extensions", {}).get("code") in (None, "INTERNAL_SERVER_ERROR") for e in errors
                ):
                    problems.append(f"graphql {name}: error without a clear code: {errors}")
        after = await snapshot(mongo, cluster.db_name)
        changed = [n for n in sorted(set(before) | set(after)) if before.get(n) != after.get(n)]
        diff = [(n, [d for d in after.get(n, []) if d not in before.get(n, [])]) for n in changed]
        print(f"\n[bad-input] cases={len(seen)} answers={' '.join(seen)} changed_collections={changed}")
        assert problems == []
        assert changed == [], str(diff)[:3000]
    finally:
        await graph.stop()
        await api.aclose()
