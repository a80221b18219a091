"""Fuzz the HTTP API over the introspected schema: random root fields, arguments of valid and
invalid types, random selections, and broken documents. Whatever is sent, the answer is never a
500, never a traceback or an internal error, and every error carries an ``extensions.code``.

Bounded: 200 generated operations plus 60 broken documents, a few seconds on the embedded store.
"""

from __future__ import annotations

import json
import string
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLType,
    get_named_type,
    is_required_argument,
    parse,
    validate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.graphql.schema import schema
from tests.support.graphql import GraphQLClient
from tests.support.schema_walk import root_fields

ROOTS = root_fields(schema._schema)
LEAKS = ("Traceback", 'File "', "internal error", "Exception", "pymongo", "redis.")

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=12))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
phone = st.one_of(st.from_regex(r"\+34[67]\d{8}", fullmatch=True), st.text(max_size=16))
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def valid(name: str, type_: GraphQLType) -> st.SearchStrategy[Any]:
    """Values the type accepts (mostly; semantic validity is left to chance)."""
    if isinstance(type_, GraphQLNonNull):
        return valid(name, type_.of_type)
    if isinstance(type_, GraphQLList):
        return st.lists(valid(name, type_.of_type), max_size=3)
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(list(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        required = {
            n: valid(n, f.type) for n, f in type_.fields.items() if isinstance(f.type, GraphQLNonNull)
        }
        optional = {
            n: valid(n, f.type) for n, f in type_.fields.items() if not isinstance(f.type, GraphQLNonNull)
        }
        return st.fixed_dictionaries(required, optional=optional)
    scalar = get_named_type(type_).name
    if name.lower().endswith("phone"):
        return phone
    return {
        "Int": st.integers(-(2**31), 2**31 - 1),
        "Float": st.floats(allow_nan=False, allow_infinity=False),
        "Boolean": st.booleans(),
        "JSON": json_value,
        "DateTime": st.datetimes().map(lambda d: d.isoformat()),
        "Date": st.dates().map(lambda d: d.isoformat()),
    }.get(scalar, st.text(max_size=24))


def selection(type_: GraphQLType) -> st.SearchStrategy[str]:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return st.just("")
    leaves = sorted(
        n
        for n, f in named.fields.items()
        if not isinstance(get_named_type(f.type), GraphQLObjectType)
        and not any(is_required_argument(a) for a in f.args.values())
    ) or ["__typename"]
    return st.lists(st.sampled_from(leaves), min_size=1, max_size=6, unique=True).map(
        lambda fields: "{ " + " ".join(fields) + " }"
    )


@st.composite
def operations(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    root = draw(st.sampled_from(ROOTS))
    variables: dict[str, Any] = {}
    for name, arg in root.field.args.items():
        how = draw(st.sampled_from(["valid", "valid", "invalid", "omit"]))
        if how == "omit":
            continue
        variables[name] = draw(valid(name, arg.type) if how == "valid" else junk)
    declared = ", ".join(f"${n}: {root.field.args[n].type}" for n in variables)
    passed = ", ".join(f"{n}: ${n}" for n in variables)
    head = f"{root.operation}({declared})" if declared else root.operation
    call = f"{root.name}({passed})" if passed else root.name
    return f"{head} {{ {call} {draw(selection(root.field.type))} }}", variables


def check(status: int, text: str) -> None:
    assert status < 500, text
    for leak in LEAKS:
        assert leak not in text, text
    body = json.loads(text)
    for error in body.get("errors", []):
        code = error.get("extensions", {}).get("code")
        assert code and code != "INTERNAL", error


async def post(gql: GraphQLClient, payload: Any) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {gql.api_key}", "content-type": "application/json"}
    response = await gql.http.post("/graphql", content=json.dumps(payload), headers=headers)
    return response.status_code, response.text


@settings(max_examples=200, suppress_health_check=list(HealthCheck))
@given(operation=operations())
async def test_random_operations_never_fail_internally(
    gql: GraphQLClient, operation: tuple[str, dict[str, Any]]
) -> None:
    query, variables = operation
    check(*await post(gql, {"query": query, "variables": variables}))


def is_executable(payload: Any) -> bool:
    """graphql-core's own verdict: a JSON object whose ``query`` parses and validates against our
    schema, with its variables an object. Only such a request may be answered without errors."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return False
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return False
    if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
        return False
    try:
        document = parse(payload["query"])
    except GraphQLError:
        return False
    return not validate(schema._schema, document)


broken_documents = st.one_of(
    st.text(alphabet=string.printable, max_size=80),
    st.sampled_from(
        [
            "{ flows { id }",
            "query($x: Int) { runs(first: $x) { edges } }",
            "{ flows { noSuchField } }",
            "mutation { importFlow }",
            "{ contact }",
            "query A { flows { id } } query A { tags { id } }",
            "query($x: Int!) { tags { id } }",
            "fragment F on Flow { id } { flows { ...G } }",
        ]
    ),
)
payloads = st.one_of(
    st.fixed_dictionaries(
        {"query": broken_documents}, optional={"variables": json_value, "operationName": junk}
    ),
    st.fixed_dictionaries({"query": junk.filter(lambda q: not isinstance(q, str))}),
    json_value.filter(lambda v: not isinstance(v, dict) or "query" not in v),
).filter(lambda payload: not is_executable(payload))


@settings(max_examples=60, suppress_health_check=list(HealthCheck))
@given(payload=payloads)
async def test_broken_requests_are_refused_with_a_code(gql: GraphQLClient, payload: Any) -> None:
    """Every payload here is one graphql-core refuses: the answer must say so, with a code."""
    status, text = await post(gql, payload)
    check(status, text)
    body = json.loads(text)
    errors = body.get("errors") if isinstance(body, dict) else None
    assert errors, f"{status} without errors for a broken request: {payload!r} -> {text[:300]}"
    assert body.get("data") is None or status < 400, text
