"""Meta's caps and limits through the Graph API fake, in virtual time, over GraphQL:

131049 (per-user marketing cap) retried a day later and shown on the recipient and the run; US
recipients of marketing templates refused before anything is sent; a broadcast planned against
the messaging limit of a business portfolio that two numbers share; 131056 paced per customer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from server.actors.events import Redeliver
from server.channels.whatsapp.pair_rate import PairPacer
from server.clock import SystemClock
from server.config import Settings
from server.ids import ContactKey, new_id
from server.runtime import Runtime
from server.store.channels import new_channel
from tests.integration.broadcast_support import contact, finished, window
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_nodes import start_with
from tests.support.clock import ShiftedClock
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.whatsapp import connect_fake

BUSINESS = "880123456789"
SECOND_NUMBER = "109999999999999"
RECIPIENTS = """query($id: ID!, $d: String, $s: String) { broadcast(id: $id) {
  counts { started sent retrying skippedByReason { reason count } deliveryByState { reason count } }
  recipients(delivery: $d, state: $s) { phone state reason runId
    delivery { state reason why until attempt } } } }"""
RUN_STEPS = "query($p: String!) { contact(phone: $p) { runs { status endReason steps { node action outcome detail } } } }"
CREATE = "mutation($i: BroadcastInput!) { createBroadcast(input: $i) { id } }"


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock(SystemClock())


@pytest.fixture
async def runtime(fast_settings: Settings, clock: ShiftedClock) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def fake(clock: ShiftedClock) -> AsyncIterator[GraphApiFake]:
    server = GraphApiFake(initial_template_status="APPROVED", business_id=BUSINESS)
    server.numbers[SECOND_NUMBER] = BUSINESS
    server.clock = lambda: clock.now().timestamp()  # the pair rate and the 24 h on the test's clock
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def channel(runtime: Runtime, api_key: str, fake: GraphApiFake) -> dict[str, Any]:
    return await connect_fake(runtime, WORKSPACE, fake)


async def marketing_flow(gql: GraphQLClient, name: str = "weekly_offer") -> str:
    """A one-template flow; publishing submits the template, which the fake approves."""
    await gql(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={
            "name": name,
            "language": "es",
            "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Ofertas de la semana"}],
        },
    )
    definition = {
        "name": f"Send {name}",
        "start": "offer",
        "nodes": [{"id": "offer", "type": "template", "template": name, "language": "es", "next": None}],
    }
    return await publish(gql, definition)


def requests_to(fake: GraphApiFake, phone: str) -> list[Any]:
    digits = phone.lstrip("+")
    return [r for r in fake.requests if r.path.endswith("/messages") and (r.body or {}).get("to") == digits]


async def recipients(gql: GraphQLClient, broadcast_id: str, **filters: Any) -> dict[str, Any]:
    return (await gql(RECIPIENTS, id=broadcast_id, **filters))["broadcast"]


async def test_131049_is_retried_a_day_later_and_reported_on_the_recipient_and_the_run(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await marketing_flow(gql)
    capped, fine = "+34600820001", "+34600820002"
    now = runtime.clock.now()
    await runtime.services.audience.insert_many(
        [contact(WORKSPACE, p, now, tags=["weekly"], opted_in=True) for p in (capped, fine)]
    )
    fake.cap_marketing(capped, times=1)
    created = (await gql(CREATE, i={"flowId": flow_id, "segment": {"tag": "weekly"}}))["createBroadcast"]
    await finished(gql, created["id"])

    view = await eventually(
        lambda: recipients(gql, created["id"], d="RETRYING"), lambda b: len(b["recipients"]) == 1
    )
    [row] = view["recipients"]
    assert row["phone"] == capped and row["state"] == "started"
    delivery = row["delivery"]
    assert (delivery["state"], delivery["reason"], delivery["attempt"]) == ("RETRYING", "131049", 1)
    assert "marketing cap" in delivery["why"]
    assert abs(_parse(delivery["until"]) - (runtime.clock.now() + timedelta(hours=24))) < timedelta(minutes=1)
    assert view["counts"]["retrying"] == 1
    assert [r.status for r in requests_to(fake, capped)] == [400]  # asked once, not again at once
    assert len(requests_to(fake, fine)) == 1 and requests_to(fake, fine)[0].status == 200

    runs = (await gql(RUN_STEPS, p=capped))["contact"]["runs"]
    [held] = [s for s in runs[-1]["steps"] if s["action"] == "message_held"]
    assert (held["node"], held["outcome"], held["detail"]["attempt"]) == ("offer", "131049", 1)

    clock.advance(timedelta(hours=23))  # an hour early: a redelivery still sends nothing
    assert runtime.actors is not None
    await runtime.actors.ask(ContactKey(WORKSPACE, capped), Redeliver(event_id=new_id("barrier")))
    assert len(requests_to(fake, capped)) == 1

    clock.advance(timedelta(hours=1, seconds=1))
    await eventually(lambda: _statuses(fake, capped), lambda found: found == [400, 200])
    after = await eventually(
        lambda: recipients(gql, created["id"], d="SENT"), lambda b: len(b["recipients"]) == 1
    )
    assert after["recipients"][0]["phone"] == capped
    assert after["counts"]["sent"] == 2 and after["counts"]["retrying"] == 0


async def test_us_recipients_of_marketing_templates_are_refused_before_sending(
    runtime: Runtime, gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await marketing_flow(gql)
    american, spanish, canadian = "+12125550101", "+34600820003", "+14165550102"
    now = runtime.clock.now()
    await runtime.services.audience.insert_many(
        [contact(WORKSPACE, p, now, tags=["promo"], opted_in=True) for p in (american, spanish, canadian)]
    )
    created = (await gql(CREATE, i={"flowId": flow_id, "segment": {"tag": "promo"}}))["createBroadcast"]
    done = await finished(gql, created["id"])
    assert done["counts"]["skippedByReason"] == [{"reason": "MARKETING_TO_US", "count": 1}]
    skipped = await recipients(gql, created["id"], s="skipped")
    assert [(r["phone"], r["reason"]) for r in skipped["recipients"]] == [(american, "MARKETING_TO_US")]
    await eventually(lambda: _statuses(fake, spanish), lambda found: found == [200])
    await eventually(lambda: _statuses(fake, canadian), lambda found: found == [200])  # +1 but Canada
    assert requests_to(fake, american) == []

    # A flow started for a US contact: refused at the channel, the run says why.
    other = "+13105550103"
    await runtime.services.audience.insert_many([contact(WORKSPACE, other, now, opted_in=True)])
    await start_with(gql, flow_id, other)
    run = await eventually(
        lambda: _last_run(gql, other), lambda r: any(s["action"] == "message_status" for s in r["steps"])
    )
    [failed] = [s for s in run["steps"] if s["action"] == "message_status"]
    assert failed["outcome"] == "failed" and failed["detail"]["error_code"] == "MARKETING_TO_US"
    assert "US phone numbers" in failed["detail"]["error"]
    assert requests_to(fake, other) == []


async def test_a_broadcast_plans_against_the_budget_two_numbers_of_a_portfolio_share(
    runtime: Runtime, gql: GraphQLClient, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    fake.portfolio_limits[BUSINESS] = 250  # Meta's first tier, enforced by the fake as Meta would
    assert channel["business_id"] == BUSINESS
    second = new_channel(
        channel_id=new_id("chn"),
        workspace_id=WORKSPACE,
        verify_token="verify-2",
        app_secret="secret-2",
        created_at=SystemClock().now(),
        **{**fake.channel_fields(), "phone_number_id": SECOND_NUMBER},
    )
    await runtime.channels.insert(second)
    second = await runtime.channels.get(second["_id"]) or second
    set_tier = "mutation($b: String) { setMessagingLimit(tier: TIER_250, businessId: $b) }"
    assert (await gql(set_tier, b=BUSINESS))["setMessagingLimit"] == "TIER_250"
    tier = await gql("query($b: String) { messagingLimit(businessId: $b) }", b=BUSINESS)
    assert tier["messagingLimit"] == "TIER_250"
    assert (await gql("{ messagingLimit }"))["messagingLimit"] == "TIER_UNLIMITED"  # the workspace's own

    flow_id = await marketing_flow(gql, "spring_sale")
    # The second number of the portfolio reaches 100 customers with the template (a flow sending
    # through it: the channel is chosen per message by whoever sends).
    for i in range(100):
        message = {
            "id": new_id("msg"),
            "to": f"+3466{i:07d}",
            "kind": "template",
            "template": {"name": "spring_sale", "language": "es", "params": {}},
        }
        result = await runtime.whatsapp.send(WORKSPACE, message, second, fresh=True)
        assert result.ok, result
    assert {r.path.split("/")[2] for r in fake.requests if r.status == 200 and "/messages" in r.path} == {
        SECOND_NUMBER
    }

    estimate = await gql(
        "query($i: BroadcastInput!) { estimateBroadcast(input: $i) { capacityLeft } }",
        i={"flowId": flow_id, "segment": {"tag": "spring"}},
    )
    assert estimate["estimateBroadcast"]["capacityLeft"] == 150

    now = runtime.clock.now()
    await runtime.services.audience.insert_many(
        [
            contact(
                WORKSPACE,
                f"+3467{i:07d}",
                now,
                tags=["spring"],
                opted_in=True,
                last_inbound_at=window(now, False),
            )
            for i in range(200)
        ]
    )
    created = (await gql(CREATE, i={"flowId": flow_id, "segment": {"tag": "spring"}}))["createBroadcast"]
    waiting = await eventually(
        lambda: gql(
            "query($id: ID!) { broadcast(id: $id) { status waitingForCapacityUntil counts { queued started } } }",
            id=created["id"],
        ),
        lambda d: d["broadcast"]["waitingForCapacityUntil"] is not None,
        timeout=60,
    )
    assert waiting["broadcast"]["counts"] == {"queued": 50, "started": 150}
    # Through the first number now: 150 more, 250 in all for the portfolio, and Meta agreed.
    await eventually(lambda: _accepted_by(fake, fake.phone_number_id), lambda n: n == 150)
    assert not [
        r for r in fake.requests if (r.body or {}).get("to", "").startswith("3467") and r.status != 200
    ]
    # One more customer through either number is over the portfolio's limit at Meta too.
    over = {"id": new_id("msg"), "to": "+34680000000", "kind": "template"}
    over["template"] = {"name": "spring_sale", "language": "es", "params": {}}
    refused = await runtime.whatsapp.send(WORKSPACE, over, second, fresh=True)
    assert (refused.ok, refused.retry, refused.error_code) == (False, True, "131048")
    await gql("mutation($id: ID!) { cancelBroadcast(id: $id) { status } }", id=created["id"])


async def test_131056_and_our_own_pacing_hold_messages_to_one_customer(
    runtime: Runtime, gql: GraphQLClient, clock: ShiftedClock, channel: dict[str, Any], fake: GraphApiFake
) -> None:
    flow_id = await publish(
        gql,
        {
            "name": "Chatty",
            "start": "a",
            "nodes": [
                {"id": "a", "type": "message", "text": "uno", "next": "b"},
                {"id": "b", "type": "message", "text": "dos", "next": "c"},
                {"id": "c", "type": "message", "text": "tres", "next": None},
            ],
        },
    )
    phone = "+34600820009"
    await runtime.services.audience.insert_many(
        [contact(WORKSPACE, phone, runtime.clock.now(), last_inbound_at=runtime.clock.now())]
    )
    fake.fail(131056, to=phone.lstrip("+"))  # Meta: too many to this customer just now
    await start_with(gql, flow_id, phone)
    run = await eventually(lambda: _last_run(gql, phone), lambda r: _held(r, "131056"))
    [step] = [s for s in run["steps"] if s["action"] == "message_held"]
    assert step["node"] == "a" and step["detail"]["attempt"] == 1
    assert [r.fault for r in requests_to(fake, phone)] == ["131056"]  # not hot-retried

    clock.advance(timedelta(seconds=1))  # 4^0 s later, the three go, in order
    await eventually(lambda: _texts(fake, phone), lambda found: found == ["uno", "dos", "tres"])

    # Our own pacing: with a burst of 2, the next message waits a pair interval, held not slept.
    runtime.whatsapp.pacer = PairPacer(runtime.redis, runtime.prefix + "strict:", clock, burst=2)
    await start_with(gql, flow_id, phone)
    run = await eventually(lambda: _last_run(gql, phone), lambda r: _held(r, "PAIR_RATE"))
    assert await _texts(fake, phone) == ["uno", "dos", "tres", "uno", "dos"]
    clock.advance(timedelta(seconds=6))
    await eventually(lambda: _texts(fake, phone), lambda found: found[-3:] == ["uno", "dos", "tres"])


def _parse(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


async def _statuses(fake: GraphApiFake, phone: str) -> list[int]:
    return [r.status for r in requests_to(fake, phone)]


async def _accepted_by(fake: GraphApiFake, number: str) -> int:
    return sum(1 for r in fake.requests if r.status == 200 and r.path.endswith(f"/{number}/messages"))


async def _texts(fake: GraphApiFake, phone: str) -> list[str]:
    return [
        b["text"]["body"] for b in fake.sent() if b.get("to") == phone.lstrip("+") and b["type"] == "text"
    ]


async def _last_run(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(RUN_STEPS, p=phone))["contact"]["runs"][-1]


def _held(run: dict[str, Any], outcome: str) -> bool:
    return any(s["action"] == "message_held" and s["outcome"] == outcome for s in run["steps"])
