"""``flow.costEstimate``: Meta's price per template node, for a country or the workspace's contacts."""

from __future__ import annotations

import pytest

from server.clock import SystemClock
from server.ids import ContactKey
from server.runtime import Runtime
from server.store.contacts import new_contact
from tests.integration.conftest import WORKSPACE, publish
from tests.support.graphql import GraphQLClient

FLOW = {
    "name": "Promo",
    "start": "promo",
    "nodes": [{"id": "promo", "type": "template", "template": "spring_sale", "language": "es", "next": None}],
}
ESTIMATE = """query($id: ID!, $c: String) { flow(id: $id) { costEstimate(country: $c) {
  currency rateCardValidFrom total nodes { nodeId category total complete
  lines { country market contacts unitPrice total } } } } }"""


async def test_flow_cost_estimate(gql: GraphQLClient, runtime: Runtime) -> None:
    flow_id = await publish(gql, FLOW)  # ensure_catalog makes spring_sale a UTILITY template
    now = SystemClock().now()
    for phone in ("+5491100000301", "+5491100000302", "+436640000303", "+34600000304"):
        assert await runtime.contacts.compare_and_set(new_contact(ContactKey(WORKSPACE, phone), now), 0)

    one = (await gql(ESTIMATE, id=flow_id, c="AR"))["flow"]["costEstimate"]
    assert one["currency"] == "USD" and one["rateCardValidFrom"] == "2026-01-01"
    [node] = one["nodes"]
    assert node["category"] == "UTILITY" and node["lines"][0]["unitPrice"] == pytest.approx(0.026)

    audience = (await gql(ESTIMATE, id=flow_id, c=None))["flow"]["costEstimate"]
    [node] = audience["nodes"]
    lines = {line["country"]: line for line in node["lines"]}
    assert lines["AR"]["contacts"] == 2 and lines["AR"]["total"] == pytest.approx(0.052)
    assert lines["AT"]["total"] == pytest.approx(0.0171)
    assert lines["ES"]["unitPrice"] == pytest.approx(0.02) and node["complete"] is True
    assert audience["total"] == pytest.approx(0.0891)
