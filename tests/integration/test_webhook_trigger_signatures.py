"""Issue 15, finding 6: webhook-trigger signatures carry a timestamp and are used once.

Over HTTP on the real store and Redis: a signed ``POST /hooks/{id}`` played three times starts
one run (the copies are refused), a signature outside the five minutes of the server's clock
(the injected one) is refused, a request refused for another reason can be sent again, and a
trigger stored before timestamps keeps its body-only signature, ``SHA256=`` prefix included.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from server.runtime import Runtime
from server.triggers.signatures import konvo_header, konvo_signature
from tests.integration.conftest import WORKSPACE, publish
from tests.integration.test_webhook_triggers import ORDER_FLOW, make_trigger, post, runs_of
from tests.support.clock import ShiftedClock
from tests.support.graphql import GraphQLClient, eventually

# No idempotency key: nothing but the signature tells a replay from a new order (as in the report).
MAPPING = {"phone": "customer.phone", "variables": {"order_id": "id"}}
ORDER = {"id": 2001, "customer": {"phone": "+34600222333"}}
PHONE = "+34600222333"


def signed_at(secret: str, payload: Any, at: datetime) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"X-Konvo-Signature": konvo_header(secret, body, int(at.timestamp()))}


async def test_a_replayed_signed_request_is_refused_and_starts_one_run(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    trigger = await make_trigger(gql, await publish(gql, ORDER_FLOW), MAPPING)
    body, headers = signed_at(trigger["secret"], ORDER, runtime.clock.now())
    first = await post(gql.http, trigger, body, headers)
    assert first.status_code == 202, first.text
    for _ in range(2):
        replay = await post(gql.http, trigger, body, headers)
        assert replay.status_code == 401 and "replay" in replay.json()["error"]
    await eventually(lambda: runs_of(gql, PHONE), lambda r: len(r) == 1)
    # The next order, signed when it is sent, is a new request.
    later = runtime.clock.now() + timedelta(seconds=2)
    assert (
        await post(gql.http, trigger, *signed_at(trigger["secret"], {**ORDER, "id": 2002}, later))
    ).status_code == 202
    runs = await eventually(lambda: runs_of(gql, PHONE), lambda r: len(r) == 2)
    assert sorted(r["trigger"]["order_id"] for r in runs) == [2001, 2002]
    listed = await gql("{ webhookTriggers { id signatureScheme } }")
    assert listed["webhookTriggers"] == [{"id": trigger["id"], "signatureScheme": "konvo"}]


async def test_a_timestamp_outside_five_minutes_of_the_server_clock_is_refused(
    gql: GraphQLClient, clock: ShiftedClock
) -> None:
    trigger = await make_trigger(gql, await publish(gql, ORDER_FLOW), MAPPING)
    signed_now = signed_at(trigger["secret"], ORDER, clock.now())
    clock.shift = timedelta(minutes=5, seconds=1)  # the server's time moves on; the request is old
    stale = await post(gql.http, trigger, *signed_now)
    assert stale.status_code == 401 and "5 minutes" in stale.json()["error"]
    early = await post(
        gql.http, trigger, *signed_at(trigger["secret"], ORDER, clock.now() + timedelta(minutes=6))
    )
    assert early.status_code == 401
    fresh = await post(
        gql.http, trigger, *signed_at(trigger["secret"], ORDER, clock.now() - timedelta(minutes=4))
    )
    assert fresh.status_code == 202, fresh.text
    await eventually(lambda: runs_of(gql, PHONE), lambda r: len(r) == 1)


async def test_a_request_refused_for_another_reason_may_be_sent_again(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger = await make_trigger(gql, flow_id, MAPPING)
    await gql("mutation($id: ID!) { archiveFlow(id: $id) { status } }", id=flow_id)
    body, headers = signed_at(trigger["secret"], ORDER, runtime.clock.now())
    assert (await post(gql.http, trigger, body, headers)).status_code == 409  # nothing stored
    await gql("mutation($id: ID!) { publishFlow(id: $id) { status } }", id=flow_id)
    assert (await post(gql.http, trigger, body, headers)).status_code == 202  # the sender's retry
    assert (await post(gql.http, trigger, body, headers)).status_code == 401  # and only once
    await eventually(lambda: runs_of(gql, PHONE), lambda r: len(r) == 1)


async def test_a_trigger_stored_before_timestamps_keeps_its_signature_in_any_case(
    runtime: Runtime, gql: GraphQLClient
) -> None:
    flow_id = await publish(gql, ORDER_FLOW)
    trigger_id = "hook_before_timestamps"
    secret = "0123456789abcdef0123456789abcdef"
    await runtime.database.collection("webhook_triggers").insert_one(
        {  # what the previous version stored: no signature_scheme, "konvo" meaning the body HMAC
            "_id": trigger_id,
            "workspace_id": WORKSPACE,
            "flow_id": flow_id,
            "mapping": {"phone": "customer.phone", "variables": {"order_id": "id"}, "signature": "konvo"},
            "secret": secret,
            "created_at": runtime.clock.now(),
        }
    )
    trigger = {"id": trigger_id, "secret": secret}

    def legacy(payload: dict[str, Any], prefix: str = "") -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        return body, {"X-Konvo-Signature": prefix + konvo_signature(secret, body)}

    assert (await post(gql.http, trigger, *legacy(ORDER))).status_code == 202
    upper = await post(gql.http, trigger, *legacy({**ORDER, "id": 2002}, "SHA256="))
    assert upper.status_code == 202, upper.text
    lower = await post(gql.http, trigger, *legacy({**ORDER, "id": 2003}, "sha256="))
    assert lower.status_code == 202
    # Its senders may move to the timestamped header, which is then used once.
    body, headers = signed_at(secret, {**ORDER, "id": 2004}, runtime.clock.now())
    assert (await post(gql.http, trigger, body, headers)).status_code == 202
    assert (await post(gql.http, trigger, body, headers)).status_code == 401
    bad = await post(gql.http, trigger, b'{"id": 1}', {"X-Konvo-Signature": "SHA256=" + "0" * 64})
    assert bad.status_code == 401
    runs = await eventually(lambda: runs_of(gql, PHONE), lambda r: len(r) == 4)
    assert sorted(r["trigger"]["order_id"] for r in runs) == [2001, 2002, 2003, 2004]
    listed = await gql("{ webhookTriggers { id signatureScheme } }")
    assert listed["webhookTriggers"] == [{"id": trigger_id, "signatureScheme": "konvo_legacy"}]

    # Once its senders sign with timestamps, the trigger can refuse the body-only signature.
    moved = await gql(
        'mutation($id: ID!) { setWebhookTriggerSignature(id: $id, signature: "konvo") { signatureScheme secret } }',
        id=trigger_id,
    )
    assert moved["setWebhookTriggerSignature"]["signatureScheme"] == "konvo"
    assert moved["setWebhookTriggerSignature"]["secret"] is None  # shown only when created or rotated
    refused = await post(gql.http, trigger, *legacy({**ORDER, "id": 2005}))
    assert refused.status_code == 401 and "t=<unix seconds>" in refused.json()["error"]
    later = runtime.clock.now() + timedelta(seconds=1)
    assert (
        await post(gql.http, trigger, *signed_at(secret, {**ORDER, "id": 2005}, later))
    ).status_code == 202


async def test_new_triggers_may_choose_the_body_only_signature(gql: GraphQLClient) -> None:
    trigger = await make_trigger(
        gql, await publish(gql, ORDER_FLOW), {**MAPPING, "signature": "konvo_legacy"}
    )
    body = json.dumps(ORDER).encode()
    response = await post(
        gql.http, trigger, body, {"X-Konvo-Signature": konvo_signature(trigger["secret"], body)}
    )
    assert response.status_code == 202, response.text
