"""A typed answer that does not fit its field is asked again, then ``on_invalid`` or ``INVALID_VALUE``.

Through GraphQL on the real store: nothing invalid or empty is saved, and "Guardado {{contact.size}}"
never goes out with a blank size.
"""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import publish
from tests.integration.test_nodes import outbox, run_of, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.graphql import GraphQLClient

VARIABLES = "query($p: String!) { contact(phone: $p) { variables } }"


def size_flow(name: str, **save: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "message", "text": "¿Qué talla usas?", "on_reply": "save"},
            {
                "id": "save",
                "type": "set_variable",
                "field": "size",
                "value": {"from": "reply"},
                "next": "saved",
                **save,
            },
            {"id": "saved", "type": "message", "text": "Guardado {{contact.size}}", "next": None},
            {"id": "human", "type": "message", "text": "Te paso con una persona", "next": None},
        ],
    }


async def sized(gql: GraphQLClient, name: str, phone: str, **save: Any) -> str:
    fields = (await gql("{ fields { name } }"))["fields"]
    if "size" not in [f["name"] for f in fields]:
        await gql('mutation { createField(name: "size", type: FIXED, options: ["S", "M", "L"]) { id } }')
    flow_id = await publish(gql, size_flow(name, **save))
    await say(gql, phone, "hola")
    return (await start_with(gql, flow_id, phone))["id"]


async def texts(gql: GraphQLClient, phone: str) -> list[str]:
    return [m["text"] for m in await outbox(gql, phone)]


async def variables(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(VARIABLES, p=phone))["contact"]["variables"]


async def test_a_wrong_option_is_asked_again_with_the_options_then_the_run_ends(gql: GraphQLClient) -> None:
    phone = "+34600500001"
    run_id = await sized(gql, "Sizes", phone)
    await say(gql, phone, "XXL")
    assert await texts(gql, phone) == ["¿Qué talla usas?", "¿Qué talla usas?\n\nS / M / L"]
    run = await run_of(gql, run_id)
    assert (run["status"], run["node"]) == ("WAITING", "ask")
    [rejected] = [s for s in run["steps"] if s["action"] == "variable_not_set"]
    assert (rejected["node"], rejected["outcome"]) == ("save", "INVALID_VALUE")
    assert rejected["detail"]["asking_again"] == "ask" and rejected["detail"]["attempt"] == 1
    assert "one of: S, M, L" in rejected["detail"]["why"]

    await say(gql, phone, "extra grande")
    await say(gql, phone, "XXL")  # the default two retries are used up
    run = await run_of(gql, run_id)
    assert (run["status"], run["endReason"]) == ("FAILED", "INVALID_VALUE")
    assert len(await texts(gql, phone)) == 3 and not any(
        t.startswith("Guardado") for t in await texts(gql, phone)
    )
    assert await variables(gql, phone) == {}


INVALID_STEPS = """query($id: ID!) { run(id: $id) { steps {
  __typename action ... on InvalidValue { why askingAgain attempt } ... on VariableNotSet { field value }
} } }"""


async def test_a_value_that_does_not_fit_reads_as_an_invalid_value_step(gql: GraphQLClient) -> None:
    """``VariableNotSet`` and ``FormNotSaved`` share the ``InvalidValue`` interface: a timeline asks
    once for why, the question asked again and the attempt, whichever of the two it is."""
    phone = "+34600500006"
    run_id = await sized(gql, "Sizes typed", phone)
    await say(gql, phone, "XXL")
    steps = (await gql(INVALID_STEPS, id=run_id))["run"]["steps"]
    [rejected] = [s for s in steps if s["action"] == "variable_not_set"]
    assert rejected["__typename"] == "VariableNotSet"
    assert (rejected["askingAgain"], rejected["attempt"], rejected["field"]) == ("ask", 1, "size")
    assert rejected["value"] == "XXL" and "one of: S, M, L" in rejected["why"]
    assert all("askingAgain" not in s for s in steps if s["action"] != "variable_not_set")


async def test_a_right_answer_after_a_wrong_one_is_saved(gql: GraphQLClient) -> None:
    phone = "+34600500002"
    run_id = await sized(gql, "Sizes again", phone)
    await say(gql, phone, "XXL")
    await say(gql, phone, " m ")
    assert (await run_of(gql, run_id))["status"] == "COMPLETED"
    assert await variables(gql, phone) == {"size": "M"}
    assert (await texts(gql, phone))[-1] == "Guardado M"


async def test_retries_then_on_invalid(gql: GraphQLClient) -> None:
    phone = "+34600500003"
    run_id = await sized(gql, "Sizes or a person", phone, on_invalid="human", retries=1)
    await say(gql, phone, "XXL")
    await say(gql, phone, "XXXL")
    run = await run_of(gql, run_id)
    assert run["status"] == "COMPLETED"
    assert await texts(gql, phone) == [
        "¿Qué talla usas?",
        "¿Qué talla usas?\n\nS / M / L",
        "Te paso con una persona",
    ]
    assert await variables(gql, phone) == {}


async def test_an_empty_value_is_never_saved_or_rendered(gql: GraphQLClient) -> None:
    """A value from a placeholder with nothing behind it is not an answer either."""
    flow = {
        "name": "From the order",
        "start": "save",
        "nodes": [
            {
                "id": "save",
                "type": "set_variable",
                "field": "city",
                "value": "{{trigger.city}}",
                "next": "say",
            },
            {"id": "say", "type": "message", "text": "Enviamos a {{contact.city}}", "next": None},
        ],
    }
    flow_id = await publish(gql, flow)
    phone = "+34600500004"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "FAILED"
    assert (await run_of(gql, run["id"]))["endReason"] == "INVALID_VALUE"
    assert await texts(gql, phone) == [] and await variables(gql, phone) == {}
