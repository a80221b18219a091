"""Marketing consent: the opt_in node, setOptIn, keyword opt-out, and marketing templates held back."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import publish
from tests.integration.test_nodes import flow, outbox, run_of, start_with
from tests.integration.test_skeleton_flow import say
from tests.support.graphql import GraphQLClient, GraphQLErrors

CONSENT = "query($p: String!) { contact(phone: $p) { optedIn optIn optOut consentLog } }"
SET_OPT_IN = (
    "mutation($p: String!, $o: Boolean!) { setOptIn(phone: $p, optedIn: $o) { optedIn optIn optOut } }"
)
TEMPLATE = "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }"


async def consent(gql: GraphQLClient, phone: str) -> dict[str, Any]:
    return (await gql(CONSENT, p=phone))["contact"]


async def make_template(gql: GraphQLClient, name: str, category: str) -> None:
    await gql(
        TEMPLATE,
        i={
            "name": name,
            "language": "es",
            "category": category,
            "components": [{"type": "BODY", "text": "Hola, tenemos ofertas"}],
        },
    )


def promo_flow(name: str, with_failure_path: bool = False) -> dict[str, Any]:
    promo: dict[str, Any] = {
        "id": "promo",
        "type": "template",
        "template": "promo_week",
        "language": "es",
        "next": "done",
    }
    if with_failure_path:
        promo["on_failure"] = "fallback"
    nodes = [
        promo,
        {"id": "done", "type": "tag", "add": ["promo-sent"], "next": None},
        {"id": "fallback", "type": "tag", "add": ["promo-skipped"], "next": None},
    ]
    return flow(name, "promo", *nodes)


async def test_set_opt_in_records_when_how_and_who(gql: GraphQLClient) -> None:
    phone = "+34600800001"
    given = (await gql(SET_OPT_IN, p=phone, o=True))["setOptIn"]
    assert given["optedIn"] is True
    assert (
        given["optIn"]["source"] == "api" and given["optIn"]["by"].startswith("key:") and given["optIn"]["at"]
    )
    withdrawn = (await gql(SET_OPT_IN, p=phone, o=False))["setOptIn"]
    assert withdrawn["optedIn"] is False and withdrawn["optOut"]["source"] == "api"
    log = (await consent(gql, phone))["consentLog"]
    assert [(e["opted_in"], e["source"]) for e in log] == [(True, "api"), (False, "api")]


@pytest.mark.parametrize("text", ["BAJA", "baja", "  Bája! ", "STOP", "stop.", "¡Stop!"])
async def test_default_keywords_opt_out_in_any_case_and_accents(gql: GraphQLClient, text: str) -> None:
    phone = "+34600800010"
    await gql(SET_OPT_IN, p=phone, o=True)
    await say(gql, phone, text)
    state = await consent(gql, phone)
    assert state["optedIn"] is False
    assert state["optOut"]["source"] == "keyword" and state["optOut"]["text"] == text
    assert state["optOut"]["keyword"] in ("baja", "stop") and state["optOut"]["message_id"]


async def test_workspace_keywords_in_spanish_with_accents(gql: GraphQLClient) -> None:
    words = await gql(
        'mutation { setOptOutKeywords(words: ["Darme de baja", "cancelar suscripción", "STOP"]) }'
    )
    assert words["setOptOutKeywords"] == ["Darme de baja", "cancelar suscripción"]  # STOP always applies
    phone = "+34600800020"
    await gql(SET_OPT_IN, p=phone, o=True)
    await say(gql, phone, "quiero darme de baja ya")  # not the whole message: no opt-out
    assert (await consent(gql, phone))["optedIn"] is True
    await say(gql, phone, "CANCELAR SUSCRIPCION")
    state = await consent(gql, phone)
    assert state["optedIn"] is False and state["optOut"]["keyword"] == "cancelar suscripcion"
    assert (await gql("{ optOutKeywords }"))["optOutKeywords"] == ["Darme de baja", "cancelar suscripción"]


async def test_an_opt_out_keyword_is_not_taken_as_the_answer_a_run_waits_for(gql: GraphQLClient) -> None:
    flow_id = await publish(
        gql,
        flow(
            "Ask city",
            "ask",
            {"id": "ask", "type": "message", "text": "¿Ciudad?", "on_reply": "save"},
            {"id": "save", "type": "set_variable", "field": "city", "value": {"from": "reply"}, "next": None},
        ),
    )
    phone = "+34600800030"
    await say(gql, phone, "hola")
    run = await start_with(gql, flow_id, phone)
    await say(gql, phone, "Baja")
    assert (await run_of(gql, run["id"]))["status"] == "WAITING"
    await say(gql, phone, "Lugo")
    assert (await run_of(gql, run["id"]))["status"] == "COMPLETED"


async def test_marketing_templates_need_opt_in_and_the_skip_says_why(gql: GraphQLClient) -> None:
    await make_template(gql, "promo_week", "MARKETING")
    ends = await publish(gql, promo_flow("Promo"))
    falls_back = await publish(gql, promo_flow("Promo with fallback", with_failure_path=True))
    phone = "+34600800040"

    run = await start_with(gql, ends, phone)
    assert run["status"] == "FAILED"
    detail = await run_of(gql, run["id"])
    assert detail["endReason"] == "NO_OPT_IN"
    skipped = next(s for s in detail["steps"] if s["action"] == "template_not_sent")
    assert skipped["outcome"] == "NO_OPT_IN" and "opt-in" in skipped["detail"]["why"]
    assert await outbox(gql, phone) == []

    run = await start_with(gql, falls_back, phone)
    assert run["status"] == "COMPLETED"
    tags = (await gql("query($p: String!) { contact(phone: $p) { tags } }", p=phone))["contact"]["tags"]
    assert tags == ["promo-skipped"] and await outbox(gql, phone) == []

    await gql(SET_OPT_IN, p=phone, o=True)
    run = await start_with(gql, ends, phone)
    assert run["status"] == "COMPLETED" and [m["kind"] for m in await outbox(gql, phone)] == ["template"]

    await say(gql, phone, "STOP")
    run = await start_with(gql, ends, phone)
    assert (await run_of(gql, run["id"]))["endReason"] == "NO_OPT_IN"
    assert len(await outbox(gql, phone)) == 1  # nothing more after the opt-out


async def test_utility_templates_go_without_opt_in(gql: GraphQLClient) -> None:
    await make_template(gql, "promo_week", "UTILITY")
    flow_id = await publish(gql, promo_flow("Order note"))
    phone = "+34600800050"
    run = await start_with(gql, flow_id, phone)
    assert run["status"] == "COMPLETED" and [m["kind"] for m in await outbox(gql, phone)] == ["template"]


async def test_the_opt_in_node_records_the_flow_and_node(gql: GraphQLClient) -> None:
    flow_id = await publish(gql, flow("Consent", "yes", {"id": "yes", "type": "opt_in", "next": None}))
    phone = "+34600800060"
    run = await start_with(gql, flow_id, phone)
    state = await consent(gql, phone)
    assert state["optedIn"] is True
    assert state["optIn"]["source"] == "flow" and state["optIn"]["node"] == "yes"
    assert state["optIn"]["flow_id"] == flow_id and state["optIn"]["run_id"] == run["id"]


async def test_keyword_words_are_checked(gql: GraphQLClient) -> None:
    with pytest.raises(GraphQLErrors) as caught:
        await gql('mutation { setOptOutKeywords(words: ["   "]) }')
    assert caught.value.codes == ["INVALID_INPUT"]
