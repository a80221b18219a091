"""Workspaces and roles, checked over the whole schema rather than field by field.

The schema is walked (``tests.support.schema_walk``), so fields other modules add later are
covered as soon as they exist:
- every root field declares who may call it (``ADMIN_ONLY`` or ``ANY_ROLE``);
- an AGENT key is refused (``FORBIDDEN``) by every ``ADMIN_ONLY`` field;
- a key of workspace A, calling any field with workspace B's ids or phones, sees none of B's
  data and changes nothing in B. To cover a new kind of object, create one in ``populate``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from graphql import GraphQLType, get_named_type

from server.config import Settings
from server.graphql.context import Context
from server.graphql.permissions import declares_roles, is_admin_only
from server.graphql.schema import schema
from server.runtime import Runtime
from tests.integration.conftest import client_for, make_workspace
from tests.support.catalog import ensure_catalog
from tests.support.flows import skeleton_flow
from tests.support.graphql import GraphQLClient
from tests.support.schema_walk import (
    RootField,
    default_leaf,
    harvest_selection,
    id_like_arguments,
    operation,
    required_arguments,
    root_fields,
    sample_value,
)

MARK = "zzsecretb"
B_PHONE = "+34699000111"
OTHER = "ws_b"
ROOTS = root_fields(schema._schema)
ALLOWED_CODES = {"NOT_FOUND", "FORBIDDEN", "INVALID_INPUT", "INVALID_FLOW", "CONFLICT", "WINDOW_CLOSED"}


def test_every_root_field_declares_who_may_call_it() -> None:
    undeclared = [repr(r) for r in ROOTS if r.definition is None or not declares_roles(r.definition)]
    assert undeclared == [], (
        "add permission_classes=ADMIN_ONLY or ANY_ROLE (server/graphql/permissions.py) to: "
        + ", ".join(undeclared)
    )


def test_configuration_is_admin_only() -> None:
    admin = {r.name for r in ROOTS if r.definition is not None and is_admin_only(r.definition)}
    expected = {"flows", "flow", "importFlow", "publishFlow", "startFlow", "createTag", "createTemplate"}
    assert expected | {"apiKeys", "createApiKey", "revokeApiKey"} <= admin


@pytest.fixture
def fast_settings(fast_settings: Settings) -> Settings:
    # The harvest reads every root, deeply, in one operation each: the inbox outbox with every
    # rendered part costs more than a client's query would (the cost limit has its own tests).
    return fast_settings.model_copy(update={"max_query_cost": 100_000})


@pytest.fixture
async def clients(runtime: Runtime, api_key: str) -> AsyncIterator[dict[str, GraphQLClient]]:
    keys = {
        "a": api_key,
        "a_agent": await make_workspace(runtime, role="AGENT"),
        "b": await make_workspace(runtime, OTHER),
    }
    made = {name: client_for(runtime, key) for name, key in keys.items()}
    try:
        yield made
    finally:
        for client in made.values():
            await client.http.aclose()


async def test_an_agent_key_is_refused_by_every_admin_only_field(
    runtime: Runtime, clients: dict[str, GraphQLClient]
) -> None:
    agent = clients["a_agent"]
    admin_only = [r for r in ROOTS if r.definition is not None and is_admin_only(r.definition)]
    assert admin_only
    for root in admin_only:
        query, variables = operation(root, required_arguments(root, default_leaf))
        if root.operation == "subscription":
            codes = await _subscription_codes(runtime, agent, query, variables)
        else:
            body = await agent.raw(query, **variables)
            assert (body.get("data") or {}).get(root.name) is None, (root, body)
            codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        assert codes == ["FORBIDDEN"], (root, codes)
    # ...while the inbox side stays open to it.
    assert (await agent("{ workspace { id } currentApiKey { role } }"))["currentApiKey"] == {"role": "AGENT"}


async def _subscription_codes(
    runtime: Runtime, client: GraphQLClient, query: str, variables: dict[str, Any]
) -> list[str]:
    context = Context(
        services=runtime.services, key_guard=runtime.key_guard, imports=runtime.contact_services.imports
    )
    assert await context.authenticate(f"Bearer {client.api_key}")
    stream: Any = await schema.subscribe(query, variable_values=variables, context_value=context)
    first = await anext(stream) if hasattr(stream, "__anext__") else stream
    if hasattr(stream, "aclose"):
        await stream.aclose()
    return [(e.extensions or {}).get("code") for e in first.errors or []]


async def populate(b: GraphQLClient) -> None:
    """Workspace B with one of everything, each carrying MARK somewhere visible."""
    definition = skeleton_flow(name=f"{MARK} flow", no_reply_after="1d")
    await ensure_catalog(b, definition)
    await b(f'mutation {{ createTag(name: "{MARK}-tag", kind: SUPPORT) {{ id }} }}')
    await b(f'mutation {{ createField(name: "{MARK}_field", type: TEXT) {{ id }} }}')
    await b(f'mutation {{ createAgent(email: "{MARK}@b.example", name: "{MARK} agent") {{ id }} }}')
    await b(
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
        i={
            "name": f"{MARK}_tpl",
            "language": "es",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": f"{MARK} hola"}],
        },
    )
    await b(f'mutation {{ createApiKey(name: "{MARK} key", role: AGENT) {{ key }} }}')
    flow_id = (await b("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=definition))[
        "importFlow"
    ]["id"]
    await b("mutation($id: ID!) { publishFlow(id: $id) { id } }", id=flow_id)
    await b('mutation($p: String!) { sandboxInbound(phone: $p, text: "zzsecretb hello") }', p=B_PHONE)
    await b(
        "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }", f=flow_id, p=B_PHONE
    )
    await b(f'mutation {{ createTeam(name: "{MARK} team") {{ id }} }}')
    await b(
        "mutation($f: ID!, $m: JSON!) { createWebhookTrigger(flowId: $f, mapping: $m) { id } }",
        f=flow_id,
        m={"phone": "customer.phone"},
    )
    await b(
        "mutation($i: InboundTriggerInput!) { createInboundTrigger(input: $i) { id } }",
        i={"flowId": flow_id, "kind": "KEYWORD", "keywords": [f"{MARK}word"]},
    )
    # Scheduled far ahead, so B does not change by itself while A probes it.
    await b(
        "mutation($i: BroadcastInput!) { createBroadcast(input: $i) { id } }",
        i={
            "segment": {"tag": f"{MARK}-tag"},
            "flowId": flow_id,
            "name": f"{MARK} broadcast",
            "startAt": "2099-01-01T00:00:00Z",
        },
    )
    await b(
        "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id } }",
        i={
            "phoneNumberId": "b-number",
            "wabaId": "b-waba",
            "accessToken": "token",
            "appSecret": "secret",
            "displayPhone": MARK,
            "baseUrl": "http://127.0.0.1:9",
        },
    )


async def harvest(client: GraphQLClient) -> dict[str, Any]:
    """Everything a key can list without arguments, deeply; also the contact B_PHONE."""
    found: dict[str, Any] = {}
    for root in ROOTS:
        if root.operation != "query":
            continue
        if root.name == "contact":
            query = f"query($p: String) {{ contact(phone: $p) {harvest_selection(root.field.type)} }}"
            found[root.name] = (await client(query, p=B_PHONE))[root.name]
        elif not required_arguments(root, default_leaf):
            sub = harvest_selection(root.field.type)
            found[root.name] = (await client(f"{{ {root.name} {sub} }}"))[root.name]
    return found


def ids_in(value: Any, key: str = "") -> set[str]:
    if isinstance(value, dict):
        return set().union(*(ids_in(v, k) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(ids_in(v, key) for v in value)) if value else set()
    if isinstance(value, str) and (key == "id" or key.endswith("Id")):
        return {value}
    return set()


async def test_no_field_reaches_another_workspace(
    runtime: Runtime, clients: dict[str, GraphQLClient]
) -> None:
    a, b = clients["a"], clients["b"]
    await populate(b)
    before = await harvest(b)
    b_ids = sorted(ids_in(before))
    assert MARK in json.dumps(before) and len(b_ids) >= 8, before
    # One id of each kind (ids read "flow_...", "tag_...", "ws_b:+34..."): enough to aim at B.
    by_kind = {re.split("[_:]", i)[0]: i for i in reversed(b_ids)}
    candidates = sorted(by_kind.values())

    def values(candidate: str) -> Any:
        def value_for(name: str, type_: GraphQLType) -> Any:
            if get_named_type(type_).name == "ID":
                return candidate
            if name.lower().endswith("phone") or name == "whatsappId":
                return B_PHONE
            return default_leaf(name, type_)

        return value_for

    async def attempt(root: RootField, targets: list[str], candidate: str) -> None:
        value_for = values(candidate)
        arguments = required_arguments(root, value_for)
        arguments.update({n: sample_value(n, root.field.args[n].type, value_for) for n in targets})
        query, variables = operation(root, arguments)
        _assert_no_leak(root, await a.raw(query, **variables), variables, set(b_ids))

    calls = 0
    for root in ROOTS:
        targets = list(id_like_arguments(root))
        if targets and root.operation != "subscription":
            # One field at a time, its candidates concurrently (as many clients would).
            await asyncio.gather(*(attempt(root, targets, c) for c in candidates))
            calls += len(candidates)
    assert calls > 30
    assert await harvest(b) == before, "a call from workspace A changed workspace B"
    await _subscriptions_see_nothing_of_b(runtime, a, b, candidates)


def _assert_no_leak(
    root: RootField, body: dict[str, Any], variables: dict[str, Any], b_ids: set[str]
) -> None:
    text = json.dumps(body)
    assert MARK not in text, (root, variables, body)
    for error in body.get("errors", []):
        assert error.get("extensions", {}).get("code") in ALLOWED_CODES, (root, variables, error)
    leaked = (ids_in(body.get("data")) & b_ids) - set(_strings(variables))
    assert not leaked, (root, variables, body)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


async def _subscriptions_see_nothing_of_b(
    runtime: Runtime, a: GraphQLClient, b: GraphQLClient, b_ids: list[str]
) -> None:
    """Subscribe from A with B's ids, make B change, and see no event about B arrive."""
    context = Context(
        services=runtime.services, key_guard=runtime.key_guard, imports=runtime.contact_services.imports
    )
    assert await context.authenticate(f"Bearer {a.api_key}")
    streams = []
    for root in ROOTS:
        if root.operation != "subscription" or not list(id_like_arguments(root)):
            continue
        for candidate in b_ids:
            arguments = {
                name: sample_value(
                    name, arg.type, lambda n, t, c=candidate: B_PHONE if n.endswith("phone") else c
                )
                for name, arg in root.field.args.items()
            }
            # A contact is named by phone or by whatsappId: B's phone through each in turn.
            variants = [{k: v for k, v in arguments.items() if k != "whatsappId"}]
            if "whatsappId" in arguments:
                variants.append(
                    {**{k: v for k, v in variants[0].items() if k != "phone"}, "whatsappId": B_PHONE}
                )
            for chosen in variants:
                query, variables = operation(root, chosen)
                streams.append(
                    (root, await schema.subscribe(query, variable_values=variables, context_value=context))
                )
    assert streams
    await b('mutation($p: String!) { sandboxInbound(phone: $p, buttonId: "yes") }', p=B_PHONE)
    # B's change is published by now (the mutation returns after the commit); give the local
    # fan-out one short bounded chance to (wrongly) deliver it.
    for root, stream in streams:
        if not hasattr(stream, "__anext__"):
            codes = [(e.extensions or {}).get("code") for e in stream.errors or []]
            assert set(codes) <= ALLOWED_CODES, (root, codes)
            continue
        try:
            result = await asyncio.wait_for(anext(stream), timeout=0.2)
        except (TimeoutError, StopAsyncIteration):
            result = None
        finally:
            await stream.aclose()
        if result is not None:
            assert MARK not in json.dumps(result.data), (root, result)
            assert {(e.extensions or {}).get("code") for e in result.errors or []} <= ALLOWED_CODES
