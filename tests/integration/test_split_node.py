"""The A/B split node through GraphQL on the real store: weights over a broadcast's audience,
a returning contact keeps its branch, and each entry is a ``split`` step naming the branch."""

from __future__ import annotations

from typing import Any

from server.runtime import Runtime
from tests.integration.broadcast_support import CREATE, contact, finished
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import run_of, start_with
from tests.support.graphql import GraphQLClient

AUDIENCE = 400  # enough to tell 70/30 from 50/50 by 8 sigma; each recipient is a real turn
ESTIMATE = "query($i: BroadcastInput!) { estimateBroadcast(input: $i) { recipients } }"
STEPS = "query($p: String!) { contact(phone: $p) { tags runs { id steps { node action outcome detail } } } }"


def offer_flow(sticky: bool = True) -> dict[str, Any]:
    return {
        "name": "Offer A/B",
        "start": "ab",
        "nodes": [
            {
                "id": "ab",
                "type": "split",
                "sticky": sticky,
                "branches": [
                    {"name": "discount", "weight": 70, "next": "tag_discount"},
                    {"name": "free_shipping", "weight": 30, "next": "tag_shipping"},
                ],
            },
            {"id": "tag_discount", "type": "tag", "add": ["got_discount"], "next": None},
            {"id": "tag_shipping", "type": "tag", "add": ["got_shipping"], "next": None},
        ],
    }


async def tagged(gql: GraphQLClient, flow_id: str, tag: str) -> int:
    data = await gql(ESTIMATE, i={"flowId": flow_id, "segment": {"tag": tag}, "requireOptIn": False})
    return int(data["estimateBroadcast"]["recipients"])


async def test_weights_hold_over_a_broadcast_audience(runtime: Runtime, gql: GraphQLClient) -> None:
    flow_id = await publish(gql, offer_flow())
    now = runtime.clock.now()
    await runtime.services.audience.insert_many(
        [contact(WORKSPACE, f"+3465{i:07d}", now, tags=["ab"], opted_in=True) for i in range(AUDIENCE)]
    )
    created = (await gql(CREATE, i={"flowId": flow_id, "segment": {"tag": "ab"}}))["createBroadcast"]
    done = await finished(gql, created["id"])
    assert done["counts"]["started"] == AUDIENCE
    discount, shipping = (
        await tagged(gql, flow_id, "got_discount"),
        await tagged(gql, flow_id, "got_shipping"),
    )
    assert discount + shipping == AUDIENCE
    # 400 independent draws at p = 0.7: sigma ~9.2, so ±46 is 5 sigma (a 50/50 split is 80 off).
    assert abs(discount - 280) < 46, (discount, shipping)


async def test_a_returning_contact_keeps_its_branch(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, offer_flow())
    phone = "+34600700001"
    first = await start_with(gql, flow_id, phone)
    second = await start_with(gql, flow_id, phone)
    third = await start_with(gql, flow_id, phone)
    branches = []
    for run in (first, second, third):
        [step] = [s for s in (await run_of(gql, run["id"]))["steps"] if s["action"] == "split"]
        branches.append((step["node"], step["outcome"], step["detail"]["kept"]))
    given = branches[0][1]
    assert given in ("discount", "free_shipping")
    assert branches == [("ab", given, False), ("ab", given, True), ("ab", given, True)]
    state = (await gql(STEPS, p=phone))["contact"]
    assert state["tags"] == ["got_discount" if given == "discount" else "got_shipping"]


async def test_a_non_sticky_split_draws_on_every_entry(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, offer_flow(sticky=False))
    phone = "+34600700002"
    seen = set()
    for _ in range(30):
        run = await start_with(gql, flow_id, phone)
        [step] = [s for s in (await run_of(gql, run["id"]))["steps"] if s["action"] == "split"]
        seen.add(step["outcome"])
        assert step["detail"]["sticky"] is False
    assert seen == {"discount", "free_shipping"}  # 30 draws at 0.7/0.3 miss one only with p < 1e-4


async def test_the_validator_refuses_a_split_without_two_weighted_named_branches(gql: GraphQLClient) -> None:
    document = offer_flow()
    document["nodes"][0]["branches"] = [{"name": "discount", "weight": 0, "next": "tag_discount"}]
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=document))[
        "importFlow"
    ]["id"]
    issues = (await gql("mutation($id: ID!) { validateFlow(id: $id) { nodeId code } }", id=flow_id))[
        "validateFlow"
    ]
    codes = {(i["nodeId"], i["code"]) for i in issues}
    assert {("ab", "SPLIT_NEEDS_BRANCHES"), ("ab", "SPLIT_WEIGHT_INVALID")} <= codes
