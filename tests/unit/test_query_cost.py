"""The static cost of operations: lists multiply, nested lists multiply again, fragments and
aliases count, first/last size lists and connections, introspection is free."""

from __future__ import annotations

from typing import Any

from graphql import parse

from server.graphql.query_cost import DEFAULT_LIST_SIZE, MUTATION_WEIGHT, operation_cost
from server.graphql.schema import schema

N = DEFAULT_LIST_SIZE
CYCLE = "{ contact(phone: $p) { runs { contact { runs { contact { runs { contact { id } } } } } } } }"


def cost(document: str, operation_name: str | None = None, **variables: Any) -> int:
    return operation_cost(schema._schema, parse(document), operation_name, variables)


def test_nested_lists_multiply() -> None:
    # contact 1, then per level: N runs, N contacts, N^2 runs, N^2 contacts, N^3 runs, N^3 contacts.
    assert cost("query($p: String!) " + CYCLE) == 1 + 2 * (N + N**2 + N**3) == 16841
    assert cost("query($p: String!) { contact(phone: $p) { id phone tags variables } }") == 1


def test_aliases_and_fragments_count_like_the_fields_they_stand_for() -> None:
    one = cost('{ contact(phone: "1") { runs { contact { id } } } }')
    aliased = " ".join(f'a{i}: contact(phone: "1") {{ runs {{ contact {{ id }} }} }}' for i in range(30))
    assert cost("{ " + aliased + " }") == 30 * one
    spread = """{ contact(phone: "1") { ...C } other: contact(phone: "2") { ... on Contact { ...C } } }
        fragment C on Contact { runs { ...R } }
        fragment R on Run { contact { id } }"""
    assert cost(spread) == 2 * one


def test_first_and_last_size_lists_and_connection_edges() -> None:
    assert cost("{ runs(first: 100) { edges { node { id } } pageInfo { hasNextPage } } }") == 1 + 100 * 2 + 1
    assert cost("{ runs { edges { node { id } } } }") == 1 + N * 2
    query = "query($n: Int) { conversations(first: $n) { edges { node { messages(last: 5) { id } } } } }"
    assert cost(query, n=3) == 1 + 3 * (1 + 1 + 5)
    assert cost(query) == 1 + N * (1 + 1 + 5)
    defaulted = "query($n: Int = 2) { conversations(first: $n) { edges { node { id } } } }"
    assert cost(defaulted) == 1 + 2 * 2


def test_mutations_weigh_more_and_introspection_is_free() -> None:
    two = 'mutation { a: createTag(name: "x", kind: SUPPORT) { id } b: createTag(name: "y", kind: SUPPORT) { id } }'
    assert cost(two) == 2 * (1 + MUTATION_WEIGHT)
    assert cost("{ __schema { types { fields { name type { ofType { name } } } } } __typename }") == 0


def test_the_named_operation_is_the_one_costed() -> None:
    document = 'query A { workspace { id } } query B { contact(phone: "1") { runs { id } } }'
    assert cost(document, "A") == 1
    assert cost(document, "B") == 1 + N
    assert cost(document, "C") == 0  # execution refuses an unknown operation anyway


def test_costing_is_linear_in_the_document_even_with_fragments_spread_many_times() -> None:
    # Each fragment spreads the next twice: expanding it would cost 2^40 steps.
    fragments = [
        f"fragment F{i} on Contact {{ runs {{ contact {{ ...F{i + 1} ...F{i + 1} }} }} }}" for i in range(40)
    ]
    fragments.append("fragment F40 on Contact { id }")
    document = '{ contact(phone: "1") { ...F0 } } ' + " ".join(fragments)
    assert cost(document) > 10**40


def test_fragments_on_different_types_of_a_list_cost_the_widest_not_the_sum() -> None:
    # A step is one type: of fragments on distinct types, only the widest counts per step...
    base = '{ contact(phone: "1") { runs { steps { node } } } }'
    one = '{ contact(phone: "1") { runs { steps { ... on MessageSent { message { id } } } } } }'
    both = """{ contact(phone: "1") { runs { steps {
        ... on MessageSent { message { id } }
        ... on TemplateSent { message { id } } } } } }"""
    assert cost(one) > cost(base)
    assert cost(both) == cost(one)
    # ... while fragments that apply to the same type (the type and an interface it implements) add up.
    overlapping = """{ contact(phone: "1") { runs { steps {
        ... on MessageSent { message { id } }
        ... on MessageStep { message { id } } } } } }"""
    assert cost(overlapping) == 2 * cost(one) - cost(base)
