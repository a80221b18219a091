"""Fields linked to Klaviyo: setting them (flow or API) updates the profile over real HTTP.

The Klaviyo side is ``tests/support/klaviyo_fake.py`` on loopback, which refuses any request
that does not match Klaviyo's published API (headers, JSON:API body, size). Failures are
injected there; the flow never waits for Klaviyo, and failed updates are retried later.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from arq.constants import job_key_prefix

from server.integrations.klaviyo import KlaviyoClient, KlaviyoError, KlaviyoSettings
from server.redis_keys import arq_job_id
from server.runtime import Runtime
from tests.integration.conftest import publish
from tests.integration.test_nodes import flow, run_of, start_with
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.klaviyo_fake import KlaviyoFake, klaviyo_fake
from tests.support.network import loopback_egress

CONNECT = "mutation($k: String, $u: String) { setKlaviyoSettings(privateKey: $k, baseUrl: $u) { configured baseUrl keyHint } }"
CITY_FIELD = 'mutation { createField(name: "city", type: TEXT, external: {provider: "klaviyo", property: "city"}) { external { provider property } } }'
SET = "mutation($p: String!, $f: String!, $v: JSON) { setVariable(phone: $p, field: $f, value: $v) { variables externalSync } }"


@pytest.fixture
def fake() -> Iterator[KlaviyoFake]:
    with klaviyo_fake() as server:
        yield server


@pytest.fixture
async def linked(runtime: Runtime, gql: GraphQLClient, fake: KlaviyoFake) -> KlaviyoFake:
    """Klaviyo connected to the fake, a ``city`` field linked to the profile's ``city``; quick retries."""
    sync = runtime.contact_services.klaviyo
    assert sync is not None
    sync.client.backoff = 0.01
    sync.retry_delays = (0.2,)
    settings = (await gql(CONNECT, k=fake.private_key, u=fake.base_url))["setKlaviyoSettings"]
    assert settings == {"configured": True, "baseUrl": fake.base_url, "keyHint": "pk_tes..."}
    field = (await gql(CITY_FIELD))["createField"]
    assert field["external"] == {"provider": "klaviyo", "property": "city"}
    return fake


def city_flow(name: str = "City") -> dict[str, Any]:
    return flow(
        name, "save", {"id": "save", "type": "set_variable", "field": "city", "value": "Madrid", "next": None}
    )


async def test_the_client_sends_what_klaviyo_documents(fake: KlaviyoFake) -> None:
    client = KlaviyoClient(loopback_egress(), backoff=0.01)
    settings = KlaviyoSettings(fake.private_key, fake.base_url)
    try:
        assert await client.import_profile(settings, "+34600700001", {"city": "Madrid"}) == 201
        assert await client.import_profile(settings, "+34600700001", {"city": None, "vip": True}) == 200
    finally:
        await client.aclose()
    assert fake.violations == []
    assert fake.profiles == {"+34600700001": {"vip": True}}  # null cleared the property
    headers = fake.requests[0].headers
    assert headers["revision"] == "2026-07-15" and headers["content-type"] == "application/vnd.api+json"
    assert fake.requests[0].body == {
        "data": {
            "type": "profile",
            "attributes": {"phone_number": "+34600700001", "properties": {"city": "Madrid"}},
        }
    }


async def test_the_fake_refuses_what_klaviyo_would(fake: KlaviyoFake) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            fake.base_url + "/api/profile-import",
            json={"data": {"type": "profile", "attributes": {"phone_number": "600", "city": "Madrid"}}},
            headers={"Authorization": f"Klaviyo-API-Key {fake.private_key}"},
        )
    assert response.status_code == 400
    found = " | ".join(fake.violations)
    for rule in ("revision header", "Content-Type", "Accept", "E.164", "attributes.properties"):
        assert rule in found


async def test_the_client_retries_429_and_5xx_then_gives_up(fake: KlaviyoFake) -> None:
    client = KlaviyoClient(loopback_egress(), backoff=0.01, attempts=3)
    settings = KlaviyoSettings(fake.private_key, fake.base_url)
    try:
        fake.fail_next(429, retry_after="0")
        fake.fail_next(503)
        assert await client.import_profile(settings, "+34600700002", {"city": "Sevilla"}) == 201
        assert [r.status for r in fake.requests] == [429, 503, 201]
        fake.fail_next(500, times=3)
        with pytest.raises(KlaviyoError) as caught:
            await client.import_profile(settings, "+34600700002", {"city": "Cádiz"})
        assert caught.value.retryable and "500" in caught.value.message
        fake.fail_next(429, retry_after="3600")  # longer than the client waits: left to the sync
        with pytest.raises(KlaviyoError) as later:
            await client.import_profile(settings, "+34600700002", {"city": "Cádiz"})
        assert later.value.retry_after == 3600
    finally:
        await client.aclose()
    assert fake.violations == []


async def test_a_flow_setting_a_linked_field_updates_the_profile(
    gql: GraphQLClient, linked: KlaviyoFake
) -> None:
    flow_id = await publish(gql, city_flow())
    run = await start_with(gql, flow_id, "+34600700010")
    assert run["status"] == "COMPLETED"
    await eventually(lambda: _profiles(linked), lambda p: p.get("+34600700010") == {"city": "Madrid"})
    steps = await eventually(
        lambda: _steps(gql, run["id"]), lambda s: any(x["action"] == "external_sync" for x in s)
    )
    set_step = next(s for s in steps if s["action"] == "variable_set")
    assert set_step["detail"]["external"] == {"provider": "klaviyo", "property": "city", "sync": "queued"}
    assert [s["outcome"] for s in steps if s["action"] == "external_sync"] == ["ok"]
    assert linked.violations == []


async def test_the_api_setting_a_linked_field_updates_the_profile(
    gql: GraphQLClient, linked: KlaviyoFake
) -> None:
    contact = (await gql(SET, p="+34600700011", f="city", v="  Bilbao "))["setVariable"]
    assert contact["variables"] == {"city": "Bilbao"} and contact["externalSync"][0]["property"] == "city"
    await eventually(lambda: _profiles(linked), lambda p: p.get("+34600700011") == {"city": "Bilbao"})
    await eventually(lambda: _pending(gql, "+34600700011"), lambda pending: pending == [])
    with pytest.raises(GraphQLErrors) as caught:
        await gql(SET, p="+34600700011", f="city", v={"not": "text"})
    assert caught.value.codes == ["INVALID_INPUT"]


async def test_a_failing_klaviyo_never_blocks_the_flow_and_is_retried(
    gql: GraphQLClient, runtime: Runtime, linked: KlaviyoFake
) -> None:
    sync = runtime.contact_services.klaviyo
    assert sync is not None
    linked.fail_next(503, times=sync.client.attempts)  # the whole first attempt fails
    flow_id = await publish(gql, city_flow())
    run = await start_with(gql, flow_id, "+34600700012")
    assert run["status"] == "COMPLETED"  # did not wait for Klaviyo
    steps = await eventually(
        lambda: _steps(gql, run["id"]),
        lambda s: [x["outcome"] for x in s if x["action"] == "external_sync"] == ["RETRYING", "ok"],
    )
    failed = next(s for s in steps if s["outcome"] == "RETRYING")
    assert "503" in failed["detail"]["error"] and failed["detail"]["retry_at"]
    assert linked.profiles["+34600700012"] == {"city": "Madrid"}
    assert await _pending(gql, "+34600700012") == []


async def test_a_bad_request_is_recorded_and_not_retried(
    gql: GraphQLClient, runtime: Runtime, linked: KlaviyoFake
) -> None:
    linked.private_key = "pk_rotated"  # the fake now refuses our key with a 400
    flow_id = await publish(gql, city_flow())
    run = await start_with(gql, flow_id, "+34600700013")
    steps = await eventually(
        lambda: _steps(gql, run["id"]), lambda s: any(x["action"] == "external_sync" for x in s)
    )
    failed = next(s for s in steps if s["action"] == "external_sync")
    assert failed["outcome"] == "FAILED" and "Klaviyo answered 400" in failed["detail"]["error"]
    pending = await _pending(gql, "+34600700013")
    assert pending[0]["gave_up"] is True


async def test_unconnected_klaviyo_is_retried_once_connected_even_after_redis_lost_the_job(
    gql: GraphQLClient, runtime: Runtime, fake: KlaviyoFake
) -> None:
    sync = runtime.contact_services.klaviyo
    assert sync is not None
    sync.client.backoff = 0.01
    sync.retry_delays = (3600.0,)
    await gql(CITY_FIELD)
    phone = "+34600700014"
    await gql(SET, p=phone, f="city", v="Vigo")
    pending = await eventually(lambda: _pending(gql, phone), lambda p: p and p[0]["attempts"] == 1)
    assert "not connected" in pending[0]["last_error"]
    # Redis loses the deferred retry; the contact document still holds the update.
    assert runtime.arq is not None
    await runtime.arq.delete(sync.queue_name, job_key_prefix + arq_job_id(f"xsync:{pending[0]['id']}:1"))
    await runtime.contacts._contacts.update_one(
        {"phone": phone}, {"$set": {"external_sync.0.next_attempt_at": runtime.clock.now()}}
    )
    await gql(CONNECT, k=fake.private_key, u=fake.base_url)
    assert await sync.recover() == 1
    await eventually(lambda: _profiles(fake), lambda p: p.get(phone) == {"city": "Vigo"})
    await eventually(lambda: _pending(gql, phone), lambda p: p == [])
    assert fake.violations == []


async def test_settings_are_checked_and_the_key_never_shown(gql: GraphQLClient) -> None:
    with pytest.raises(GraphQLErrors) as caught:
        await gql(CONNECT, k="pk_x", u="ftp://nope")
    assert caught.value.codes == ["EGRESS_REFUSED"]  # the egress policy takes https (http if allowed)
    shown = (await gql(CONNECT, k="pk_secret_value", u=None))["setKlaviyoSettings"]
    assert shown == {"configured": True, "baseUrl": "https://a.klaviyo.com", "keyHint": "pk_sec..."}
    assert (await gql(CONNECT, k=None, u=None))["setKlaviyoSettings"]["configured"] is False


async def _profiles(fake: KlaviyoFake) -> dict[str, dict[str, Any]]:
    return {phone: dict(props) for phone, props in fake.profiles.items()}


async def _steps(gql: GraphQLClient, run_id: str) -> list[dict[str, Any]]:
    return (await run_of(gql, run_id))["steps"]


async def _pending(gql: GraphQLClient, phone: str) -> list[dict[str, Any]]:
    data = await gql("query($p: String!) { contact(phone: $p) { externalSync } }", p=phone)
    return data["contact"]["externalSync"]
