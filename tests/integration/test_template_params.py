"""Template parameters (issue 14): typed ``params``, checked against the template at validate/publish.

Every check goes through GraphQL on the real store and Redis; sends go to the loopback Graph API
fake, which checks each template send against Meta's OpenAPI description *and* against the
template it holds (parameter counts and kinds, as Meta answers 132000/132012).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.ids import new_id
from tests.integration.conftest import WORKSPACE
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, GraphQLErrors, eventually
from tests.support.whatsapp import FAST_RETRIES

VALIDATE = "mutation($id: ID!) { validateFlow(id: $id) { nodeId severity code message } }"
IMPORT = "mutation($d: JSON!) { importFlow(definition: $d) { id } }"
PUBLISH = "mutation($id: ID!) { publishFlow(id: $id) { status activeVersion pendingVersion } }"
CREATE_TEMPLATE = "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }"

ORDER_UPDATE = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"},
    {"type": "BODY", "text": "Hola {{1}}, tu pedido {{2}} está en camino."},
    {"type": "FOOTER", "text": "Tienda Ejemplo"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Gracias"},
            {"type": "URL", "text": "Ver pedido", "url": "https://shop.example/o/{{1}}"},
            {"type": "COPY_CODE", "example": "SAVE10"},
            {"type": "URL", "text": "Tienda", "url": "https://shop.example"},
        ],
    },
]
PROMO_IMAGE = [
    {"type": "HEADER", "format": "IMAGE"},
    {"type": "BODY", "text": "Oferta para ti"},
]
GOOD_PARAMS: dict[str, Any] = {
    "header": "{{trigger.order_id}}",
    "body": ["{{contact.first_name}}", "{{trigger.order_id}}"],
    "buttons": [{"index": 1, "url": "{{trigger.order_id}}"}, {"index": 2, "coupon_code": "SAVE10"}],
}


async def create_template(
    gql: GraphQLClient, name: str, components: list[dict[str, Any]], language: str = "es"
) -> str:
    data = await gql(
        CREATE_TEMPLATE,
        i={"name": name, "language": language, "category": "UTILITY", "components": components},
    )
    return data["createTemplate"]["id"]


def template_flow(params: Any, template: str = "order_update", language: str = "es") -> dict[str, Any]:
    node: dict[str, Any] = {"id": "notify", "type": "template", "template": template, "language": language}
    if params is not None:
        node["params"] = params
    return {"name": new_id("flow"), "start": "notify", "nodes": [{**node, "next": None}]}


async def import_flow(gql: GraphQLClient, definition: dict[str, Any]) -> str:
    return (await gql(IMPORT, d=definition))["importFlow"]["id"]


async def params_issues(gql: GraphQLClient, flow_id: str) -> list[dict[str, Any]]:
    found = (await gql(VALIDATE, id=flow_id))["validateFlow"]
    return [i for i in found if i["code"] == "TEMPLATE_PARAMS"]


# --- validate and publish -------------------------------------------------------------------------


async def test_a_dynamic_url_button_without_its_suffix_fails_validate_and_publish(gql: GraphQLClient) -> None:
    """Issue 14, item 3: this flow used to validate clean, publish, then fail every send."""
    await create_template(gql, "order_update", ORDER_UPDATE)
    params = {**GOOD_PARAMS, "buttons": [{"index": 2, "coupon_code": "SAVE10"}]}
    flow_id = await import_flow(gql, template_flow(params))
    [issue] = await params_issues(gql, flow_id)
    assert (issue["nodeId"], issue["severity"]) == ("notify", "ERROR")
    assert "URL button 1 ('Ver pedido')" in issue["message"] and "URL suffix" in issue["message"]
    with pytest.raises(GraphQLErrors) as refused:
        await gql(PUBLISH, id=flow_id)
    assert refused.value.codes == ["INVALID_FLOW"]
    error = refused.value.errors[0]
    assert error["extensions"]["nodeId"] == "notify" and "TEMPLATE_PARAMS" in error["message"]

    flow_id = await import_flow(gql, template_flow(GOOD_PARAMS))
    assert await params_issues(gql, flow_id) == []
    assert (await gql(PUBLISH, id=flow_id))["publishFlow"]["status"] == "ACTIVE"


MISMATCHES: list[tuple[str, str, list[dict[str, Any]], Any, list[str]]] = [
    ("body count", "order_update", ORDER_UPDATE, {**GOOD_PARAMS, "body": ["Ana"]}, ["2 body parameter(s)"]),
    ("no params at all", "order_update", ORDER_UPDATE, None, ["header", "body", "URL suffix", "its code"]),
    (
        "header missing",
        "order_update",
        ORDER_UPDATE,
        {k: v for k, v in GOOD_PARAMS.items() if k != "header"},
        ["header 'Pedido {{1}}'"],
    ),
    (
        "media for a text header",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "header": {"kind": "image", "url": "https://cdn.example/a.jpg"}},
        ["header is text"],
    ),
    (
        "copy code too long",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "buttons": [{"index": 1, "url": "A-1"}, {"index": 2, "coupon_code": "X" * 16}]},
        ["16 characters"],
    ),
    (
        "parameter for a fixed URL",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "buttons": [*GOOD_PARAMS["buttons"], {"index": 3, "url": "x"}]},
        ["fixed address"],
    ),
    (
        "coupon given to a URL button",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "buttons": [{"index": 1, "coupon_code": "A"}, {"index": 2, "coupon_code": "B"}]},
        ["takes no copy-code parameter", "URL suffix"],
    ),
    (
        "index beyond the buttons",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "buttons": [*GOOD_PARAMS["buttons"], {"index": 7, "payload": "x"}]},
        ["index 7"],
    ),
    (
        "empty literal",
        "order_update",
        ORDER_UPDATE,
        {**GOOD_PARAMS, "body": ["Ana", "  "]},
        ["body parameter {{2}} is empty"],
    ),
    ("image header missing", "promo_image", PROMO_IMAGE, {}, ["header is an image"]),
    (
        "video given for an image",
        "promo_image",
        PROMO_IMAGE,
        {"header": {"kind": "video", "url": "https://cdn.example/a.mp4"}},
        ["gives a video"],
    ),
    (
        "image that is not a URL",
        "promo_image",
        PROMO_IMAGE,
        {"header": {"kind": "image", "url": "a.jpg"}},
        ["http(s) URL"],
    ),
]


@pytest.mark.parametrize(
    ("template", "components", "params", "expected"),
    [case[1:] for case in MISMATCHES],
    ids=[case[0] for case in MISMATCHES],
)
async def test_each_parameter_problem_is_an_error_on_the_node(
    gql: GraphQLClient, template: str, components: list[dict[str, Any]], params: Any, expected: list[str]
) -> None:
    await create_template(gql, template, components)
    flow_id = await import_flow(gql, template_flow(params, template))
    found = await params_issues(gql, flow_id)
    assert found, "the node's params do not fit the template"
    assert {(i["nodeId"], i["severity"]) for i in found} == {("notify", "ERROR")}
    messages = " | ".join(i["message"] for i in found)
    assert len(found) == len(expected), messages  # one issue per problem
    for part in expected:
        assert part in messages


async def test_params_are_checked_against_the_nodes_language(gql: GraphQLClient) -> None:
    """Translations may differ: each language variant has its own components."""
    await create_template(gql, "welcome", [{"type": "BODY", "text": "Hola {{1}}"}], "es")
    await create_template(gql, "welcome", [{"type": "BODY", "text": "Hi {{1}}, from {{2}}"}], "en_US")
    spanish = await import_flow(gql, template_flow({"body": ["Ana"]}, "welcome", "es"))
    assert await params_issues(gql, spanish) == []
    english = await import_flow(gql, template_flow({"body": ["Ana"]}, "welcome", "en_US"))
    [issue] = await params_issues(gql, english)
    assert "'welcome' (en_US)" in issue["message"] and "2 body parameter(s)" in issue["message"]


# --- the typed schema -----------------------------------------------------------------------------

WRONG_SHAPES: list[tuple[str, Any, str]] = [
    ("buttons by key", {"buttons": {"0": "abc"}}, "params.buttons"),
    ("button without a parameter", {"buttons": [{"index": 1}]}, "params.buttons.0"),
    ("button with two parameters", {"buttons": [{"url": "a", "payload": "b"}]}, "params.buttons.0"),
    ("unknown button key", {"buttons": [{"index": 1, "suffix": "a"}]}, "params.buttons.0.suffix"),
    ("button index too high", {"buttons": [{"index": 10, "url": "a"}]}, "params.buttons.0.index"),
    ("object as body value", {"body": [{"text": "Ana"}]}, "params.body"),
    (
        "unknown media kind",
        {"header": {"kind": "gif", "url": "https://x.example/a.gif"}},
        "params.header.kind",
    ),
    ("text and media header", {"header": {"text": "A", "url": "https://x.example"}}, "params.header"),
    ("unknown part", {"footer": "Adiós"}, "params"),
    ("params not an object", ["Ana"], "params"),
]


@pytest.mark.parametrize(
    ("params", "where"), [case[1:] for case in WRONG_SHAPES], ids=[case[0] for case in WRONG_SHAPES]
)
async def test_a_wrong_shape_is_invalid_flow_naming_the_node(
    gql: GraphQLClient, params: Any, where: str
) -> None:
    with pytest.raises(GraphQLErrors) as refused:
        await import_flow(gql, template_flow(params))
    assert refused.value.codes == ["INVALID_FLOW"]
    error = refused.value.errors[0]
    assert error["extensions"]["nodeId"] == "notify"
    assert error["message"].startswith(f"node 'notify': {where}")
    assert "{'" not in error["message"]  # never Python's text of a dict

    await create_template(gql, "order_update", ORDER_UPDATE)
    flow_id = await import_flow(gql, template_flow(GOOD_PARAMS))
    with pytest.raises(GraphQLErrors) as refused:
        await gql(
            "mutation($id: ID!, $d: JSON!) { updateFlowDraft(id: $id, definition: $d) { id } }",
            id=flow_id,
            d=template_flow(params),
        )
    assert (
        refused.value.codes == ["INVALID_FLOW"]
        and refused.value.errors[0]["extensions"]["nodeId"] == "notify"
    )
    draft = (await gql("query($id: ID!) { flow(id: $id) { draft } }", id=flow_id))["flow"]["draft"]
    assert draft["nodes"][0]["params"] == GOOD_PARAMS  # the accepted draft is kept


# --- sending --------------------------------------------------------------------------------------


async def connect(gql: GraphQLClient, runtime: Any, fake: GraphApiFake) -> None:
    runtime.graph.policy = FAST_RETRIES
    await gql(
        "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id } }",
        i={
            "phoneNumberId": fake.phone_number_id,
            "wabaId": fake.waba_id,
            "accessToken": fake.token,
            "appSecret": "s3cret",
            "baseUrl": fake.url,
        },
    )


async def start(gql: GraphQLClient, flow_id: str, phone: str, variables: dict[str, Any]) -> None:
    await gql(
        "mutation($f: ID!, $p: String!, $v: JSON) { startFlow(flowId: $f, phone: $p, variables: $v) { id } }",
        f=flow_id,
        p=phone,
        v=variables,
    )


async def test_typed_params_reach_meta_as_the_template_expects(
    gql: GraphQLClient, runtime: Any, fake: GraphApiFake
) -> None:
    """Header, body, URL suffix, copy code and the quick reply's payload, placeholders rendered."""
    await connect(gql, runtime, fake)
    await create_template(gql, "order_update", ORDER_UPDATE)
    await gql('mutation { createField(name: "first_name", type: TEXT) { id } }')
    definition = template_flow(GOOD_PARAMS)
    definition["nodes"][0]["buttons"] = [{"id": "thanks", "next": None}]
    flow_id = await import_flow(gql, definition)
    assert (await gql(PUBLISH, id=flow_id))["publishFlow"]["status"] == "ACTIVE"  # Meta approved it
    await gql('mutation { setVariable(phone: "+34600000301", field: "first_name", value: "Ana") { id } }')
    await start(gql, flow_id, "+34600000301", {"order_id": "A-17"})

    [sent] = await eventually(lambda: _sent(fake), lambda found: len(found) == 1)
    assert fake.rejected() == []  # OpenAPI shape and the template's own parameters both fit
    parts = {(c["type"], c.get("index")): c["parameters"] for c in sent["template"]["components"]}
    assert parts == {
        ("header", None): [{"type": "text", "text": "A-17"}],
        ("body", None): [{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-17"}],
        ("button", "0"): [{"type": "payload", "payload": "thanks"}],
        ("button", "1"): [{"type": "text", "text": "A-17"}],
        ("button", "2"): [{"type": "coupon_code", "coupon_code": "SAVE10"}],
    }


async def test_old_draft_shapes_still_load_and_send(
    gql: GraphQLClient, runtime: Any, fake: GraphApiFake
) -> None:
    """Drafts stored before params were typed (bare values in lists, media as ``link``) keep working."""
    await connect(gql, runtime, fake)
    await create_template(gql, "order_update", ORDER_UPDATE)
    await create_template(gql, "promo_image", PROMO_IMAGE)
    old_text = {"header": ["A-17"], "body": ["Ana", 17], "buttons": ["A-17", "SAVE10"]}
    old_media = {"header": {"link": "https://cdn.example/p.jpg"}}
    sent_ids = []
    for params, template in ((old_text, "order_update"), (old_media, "promo_image")):
        flow_id = new_id("flow")
        now = runtime.clock.now()
        definition = template_flow(params, template)
        await runtime.flows.insert(  # as an older version of the server stored it
            {
                "_id": flow_id,
                "workspace_id": WORKSPACE,
                "name": definition["name"],
                "status": "draft",
                "draft": definition,
                "active_version": None,
                "version_counter": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        state = (await gql("query($id: ID!) { flow(id: $id) { issues { severity code } } }", id=flow_id))[
            "flow"
        ]
        assert [i for i in state["issues"] if i["severity"] == "ERROR"] == []
        assert (await gql(PUBLISH, id=flow_id))["publishFlow"]["status"] == "ACTIVE"
        sent_ids.append(flow_id)
    for number, flow_id in enumerate(sent_ids):
        await start(gql, flow_id, f"+3460000031{number}", {})
    sent = await eventually(lambda: _sent(fake), lambda found: len(found) == 2)
    assert fake.rejected() == []
    by_name = {s["template"]["name"]: s["template"]["components"] for s in sent}
    assert by_name["order_update"][2:] == [
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A-17"}]},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ]
    assert by_name["order_update"][1]["parameters"][1] == {"type": "text", "text": "17"}
    assert by_name["promo_image"] == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example/p.jpg"}}]}
    ]


async def _sent(fake: GraphApiFake) -> list[dict[str, Any]]:
    return fake.sent()


async def test_the_graph_fake_refuses_template_sends_that_do_not_fit_the_template(fake: GraphApiFake) -> None:
    """The fake answers as Meta would (132000/132012), so the tests above can fail."""
    fake.add_template("order_update", "es", "UTILITY", ORDER_UPDATE)
    good = [
        {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-17"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A-17"}]},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ]
    cases: list[tuple[list[dict[str, Any]], int | None]] = [
        (good, None),
        (good[1:], 132000),  # no header parameter
        ([good[0], {"type": "body", "parameters": good[1]["parameters"][:1]}, *good[2:]], 132000),
        ([*good[:2], good[3]], 132000),  # the dynamic URL button's suffix is missing
        (
            [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "https://x.example/a.jpg"}}],
                },
                *good[1:],
            ],
            132012,
        ),
        (
            [
                *good[:2],
                {**good[2], "sub_type": "quick_reply", "parameters": [{"type": "payload", "payload": "x"}]},
                good[3],
            ],
            132012,
        ),
    ]
    async with httpx.AsyncClient(base_url=fake.url) as http:
        for components, code in cases:
            response = await http.post(
                f"/{fake.version}/{fake.phone_number_id}/messages",
                headers={"Authorization": f"Bearer {fake.token}"},
                json={
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "34600000399",
                    "type": "template",
                    "template": {
                        "name": "order_update",
                        "language": {"code": "es", "policy": "deterministic"},
                        "components": components,
                    },
                },
            )
            if code is None:
                assert response.status_code == 200, response.text
            else:
                assert response.json()["error"]["code"] == code, response.text
