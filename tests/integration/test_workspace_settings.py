"""A workspace's settings edited by its ADMIN keys through ``updateWorkspace``: name, time zone,
locale, default country and opt-out words; checked before anything is stored, and seen by every
server process at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.config import Settings
from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE, client_for, make_workspace
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.network import HostsResolver

SETTINGS = "{ workspace { name timezone locale defaultCountry optOutKeywords status } }"
UPDATE = """mutation($n: String, $z: String, $l: String, $c: String, $w: [String!]) {
  updateWorkspace(name: $n, timezone: $z, locale: $l, defaultCountry: $c, optOutKeywords: $w) {
    name timezone locale defaultCountry optOutKeywords status } }"""
SAY = "mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }"
OPTED = "query($p: String!) { contact(phone: $p) { optedIn } }"


async def test_an_admin_key_changes_every_setting_at_once(gql: GraphQLClient) -> None:
    changed = (
        await gql(
            UPDATE,
            n=" Tienda  Sol ",
            z="America/Bogota",
            l="es_co",
            c="co",
            w=["basta", "Basta", "STOP", "no más"],
        )
    )["updateWorkspace"]
    assert changed == {
        "name": "Tienda Sol",
        "timezone": "America/Bogota",
        "locale": "es-CO",
        "defaultCountry": "CO",
        "optOutKeywords": ["basta", "no más"],  # repeats and the defaults (STOP, BAJA) left out
        "status": "ACTIVE",
    }
    assert (await gql(SETTINGS))["workspace"] == changed
    # Omitted settings stay as they are.
    assert (await gql(UPDATE, n="Tienda Luna"))["updateWorkspace"] == {**changed, "name": "Tienda Luna"}


async def test_the_settings_take_effect(gql: GraphQLClient) -> None:
    await gql(UPDATE, c="CO", w=["basta"])
    await gql(SAY, p="300 1234567", t="hola")  # a national number, read in Colombia
    await gql('mutation { setOptIn(phone: "+573001234567", optedIn: true) { id } }')
    await gql(SAY, p="+573001234567", t="Basta")  # the workspace's own opt-out word
    opted = await eventually(
        lambda: gql(OPTED, p="+573001234567"), lambda d: d["contact"]["optedIn"] is False
    )
    assert opted["contact"]["optedIn"] is False

    assert (await gql(UPDATE, c=""))["updateWorkspace"]["defaultCountry"] is None  # "" clears it
    with pytest.raises(GraphQLErrors) as refused:
        await gql(SAY, p="300 1234567", t="hola")
    assert refused.value.codes == ["INVALID_INPUT"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"n": "\u202eevil"}, "name"),
        ({"n": "x" * 121}, "name"),
        ({"z": "Europe/Atlantis"}, "timezone"),
        ({"l": "xx-not-a-locale"}, "locale"),
        ({"c": "ZZ"}, "defaultCountry"),
        ({"w": ["x" * 41]}, "optOutKeywords"),
    ],
)
async def test_a_bad_value_is_refused_by_name_and_nothing_changes(
    gql: GraphQLClient, variables: dict[str, object], field: str
) -> None:
    before = (await gql(SETTINGS))["workspace"]
    with pytest.raises(GraphQLErrors) as refused:
        await gql(UPDATE, **{"n": "Otro nombre", "w": ["basta"], **variables})
    assert refused.value.codes == ["INVALID_INPUT"]
    assert refused.value.errors[0]["extensions"]["field"] == field
    assert (await gql(SETTINGS))["workspace"] == before  # not even the valid settings were stored


async def test_an_agent_key_cannot_change_settings(runtime: Runtime, api_key: str) -> None:
    agent = client_for(runtime, await make_workspace(runtime, WORKSPACE, role="AGENT"))
    try:
        with pytest.raises(GraphQLErrors) as refused:
            await agent(UPDATE, n="Mía")
        assert refused.value.codes == ["FORBIDDEN"]
        assert (await agent(SETTINGS))["workspace"]["name"] == f"Workspace {WORKSPACE}"
    finally:
        await agent.http.aclose()


@pytest.fixture
async def second_process(fast_settings: Settings) -> AsyncIterator[Runtime]:
    """Another server process on the same store and Redis (a replica)."""
    other = Runtime(fast_settings, resolver=HostsResolver())
    await other.start()
    try:
        yield other
    finally:
        await other.stop()


async def test_every_process_sees_a_change_at_once(gql: GraphQLClient, second_process: Runtime) -> None:
    assert (
        await second_process.caches.regional_of(WORKSPACE)
    ).timezone == "Europe/Madrid"  # cached there now
    heard: list[tuple[str, str]] = []
    second_process.workspace_gate.on_change(lambda workspace_id, change: heard.append((workspace_id, change)))
    await gql(UPDATE, z="Asia/Tokyo", l="ja-JP")
    await eventually(lambda: _heard(heard), lambda seen: (WORKSPACE, "settings") in seen)
    # Its cache was dropped when it heard, not when it expired.
    regional = await second_process.caches.regional_of(WORKSPACE)
    assert (regional.timezone, regional.locale) == ("Asia/Tokyo", "ja-JP")


async def _heard(heard: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(heard)
