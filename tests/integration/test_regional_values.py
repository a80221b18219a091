"""Dates and numbers typed by customers are read in the workspace's time zone and locale and written
back the way that locale writes them (issue 14, item 10), through GraphQL on the real store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import publish
from tests.support.graphql import GraphQLClient, GraphQLErrors

SAY = "mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }"
START = "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }"
OUTBOX = "query($p: String!) { sandboxOutbox(phone: $p) { text } }"
VARIABLES = "query($p: String!) { contact(phone: $p) { variables } }"
UPDATE = "mutation($z: String, $l: String) { updateWorkspace(timezone: $z, locale: $l) { timezone locale } }"


def ask_and_echo(name: str, field: str, echo: str) -> dict[str, Any]:
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "message", "text": "¿Cuándo?", "on_reply": "save"},
            {
                "id": "save",
                "type": "set_variable",
                "field": field,
                "value": {"from": "reply"},
                "next": "echo",
            },
            {"id": "echo", "type": "message", "text": echo, "next": None},
        ],
    }


async def answer(gql: GraphQLClient, flow_id: str, phone: str, reply: str) -> tuple[str, dict[str, Any]]:
    """Open the window, start the flow, answer its question; the last message and the variables."""
    await gql(SAY, p=phone, t="hola")
    await gql(START, f=flow_id, p=phone)
    await gql(SAY, p=phone, t=reply)
    texts = [m["text"] for m in (await gql(OUTBOX, p=phone))["sandboxOutbox"]]
    return texts[-1], (await gql(VARIABLES, p=phone))["contact"]["variables"]


async def test_a_typed_date_is_midnight_in_madrid_and_written_back_as_spain_writes_it(
    gql: GraphQLClient,
) -> None:
    await gql('mutation { createField(name: "delivery", type: DATE) { id } }')
    echo = (
        "Entrega: {{contact.delivery}} · {{contact.delivery|date:long}} · {{contact.delivery|date:%Y-%m-%d}}"
    )
    flow_id = await publish(gql, ask_and_echo("Delivery", "delivery", echo))
    text, variables = await answer(gql, flow_id, "+34600888001", "24/12/2026")
    assert variables == {"delivery": "2026-12-23T23:00:00+00:00"}  # midnight Europe/Madrid, not UTC
    assert text == "Entrega: 24/12/2026 · 24 de diciembre de 2026 · 2026-12-24"


async def test_a_typed_amount_is_read_and_written_with_spanish_marks(gql: GraphQLClient) -> None:
    await gql('mutation { createField(name: "budget", type: NUMBER) { id } }')
    echo = "Presupuesto: {{contact.budget}} ({{contact.budget|number:0}}, {{contact.budget|currency}})"
    flow_id = await publish(gql, ask_and_echo("Budget", "budget", echo))
    text, variables = await answer(gql, flow_id, "+34600888002", "1.234,50 €")
    assert variables == {"budget": 1234.5}
    assert text == "Presupuesto: 1.234,50 (1.235, 1.234,50\xa0€)"


async def test_the_workspace_locale_and_zone_can_change(gql: GraphQLClient) -> None:
    assert (await gql("{ workspace { timezone locale } }"))["workspace"] == {
        "timezone": "Europe/Madrid",
        "locale": "es-ES",  # not set: from the time zone's country
    }
    changed = (await gql(UPDATE, z="America/New_York", l="en_us"))["updateWorkspace"]
    assert changed == {"timezone": "America/New_York", "locale": "en-US"}
    await gql('mutation { createField(name: "delivery", type: DATE) { id } }')
    flow_id = await publish(gql, ask_and_echo("Delivery US", "delivery", "Delivery: {{contact.delivery}}"))
    text, variables = await answer(gql, flow_id, "+34600888003", "12/5/2026")
    assert variables == {"delivery": "2026-12-05T05:00:00+00:00"}  # December 5, midnight in New York
    assert text == "Delivery: 12/5/2026"


@pytest.mark.parametrize(
    ("variables", "field", "message"),
    [
        ({"l": "xx-YY"}, "locale", "locale 'xx-YY' is not a known locale"),
        ({"z": "Mars/Olympus"}, "timezone", "time zone 'Mars/Olympus' is not an IANA time zone"),
        ({}, None, "give at least one setting to change: name, timezone, locale"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    gql: GraphQLClient, variables: dict[str, str], field: str | None, message: str
) -> None:
    with pytest.raises(GraphQLErrors) as caught:
        await gql(UPDATE, **variables)
    assert caught.value.codes == ["INVALID_INPUT"]
    assert message in caught.value.errors[0]["message"]
    assert (await gql("{ workspace { timezone locale } }"))["workspace"]["locale"] == "es-ES"


async def test_a_format_that_does_not_exist_is_a_validation_error(gql: GraphQLClient) -> None:
    definition = {
        "name": "Typo",
        "start": "say",
        "nodes": [{"id": "say", "type": "message", "text": "Hola {{contact.birthday|dat}}", "next": None}],
    }
    flow_id = (await gql("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition))[
        "importFlow"
    ]["id"]
    issues = (
        await gql("mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code message } }", id=flow_id)
    )["validateFlow"]
    assert {
        "nodeId": "say",
        "severity": "ERROR",
        "code": "PLACEHOLDER_FORMAT",
        "message": "node 'say': {{contact.birthday|dat}}: unknown format 'dat'; "
        "use one of date, datetime, time, number, currency",
    } in issues
    with pytest.raises(GraphQLErrors) as caught:
        await gql("mutation($id: ID!) { publishFlow(id: $id) { id } }", id=flow_id)
    assert caught.value.codes == ["INVALID_FLOW"]
