"""The generated parts of the GraphQL schema cover what the runner and the flow document have.

Every step action the runner, the status handling and the contact commands record has a step
type of its own (a new action without one fails here, not silently as ``OtherStep``); every node
kind of the flow document has a type implementing ``FlowNode``; and a node kind added to the
document's models becomes a GraphQL type with nothing else to write.
"""

from __future__ import annotations

import ast
import inspect
from typing import Annotated, Any, Literal

import strawberry
from graphql import (
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_leaf_type,
)
from pydantic import BaseModel, Field
from strawberry.printer import print_schema

from server.actors import contact_commands
from server.graphql.flow_document import FlowNode, FlowTypes
from server.graphql.run_steps import STEP_TYPES
from server.graphql.schema import schema
from server.machines import answers, node_entry, runner, send_nodes, statuses, turn
from server.machines.definition import NODE_TYPES, _Node


def _strings(node: ast.AST) -> set[str]:
    """The texts an expression can take: a literal, or either side of ``a if cond else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def recorded_actions(module: Any) -> set[str]:
    """The ``action`` argument of every ``record_step`` call in ``module``, resolved
    through the function's own assignments when it is a variable (``trigger = "a" if .. else "b"``)."""
    found: set[str] = set()
    tree = ast.parse(inspect.getsource(module))
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assigned: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, set()).update(_strings(node.value))
        for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name != "record_step" or len(call.args) < 4:
                continue
            action = call.args[3]
            found |= assigned.get(action.id, set()) if isinstance(action, ast.Name) else _strings(action)
    return found


def test_every_recorded_step_action_has_a_type() -> None:
    recorders = (runner, turn, node_entry, send_nodes, answers, statuses, contact_commands)
    actions = set().union(*(recorded_actions(m) for m in recorders))
    assert {"started", "message_sent", "button", "no_reply", "timer", "message_status"} <= actions
    assert actions - set(STEP_TYPES) == set(), "add a step type in server/graphql/run_steps.py"


def response_shape(type_: GraphQLOutputType) -> str:
    """What GraphQL's "same response shape" rule compares: list and non-null wrappers, and the
    scalar or enum itself; two object types may differ (their own fields are compared when
    selected)."""
    if isinstance(type_, GraphQLNonNull):
        return response_shape(type_.of_type) + "!"
    if isinstance(type_, GraphQLList):
        return f"[{response_shape(type_.of_type)}]"
    return type_.name if is_leaf_type(type_) else "object"


def test_same_named_fields_of_one_interface_have_one_type() -> None:
    """GraphQL refuses a query selecting two same-named fields of different shapes (a timeline of
    every step type, an editor of every node kind): the implementations must agree."""
    graphql_schema = schema._schema
    for name in ("Step", "FlowNode", "Message"):
        interface = graphql_schema.get_type(name)
        assert isinstance(interface, GraphQLInterfaceType)
        seen: dict[str, tuple[str, str]] = {}
        for implementation in graphql_schema.get_possible_types(interface):
            for field_name, field in implementation.fields.items():
                shown = response_shape(field.type)
                first = seen.setdefault(field_name, (implementation.name, shown))
                assert first[1] == shown, (
                    f"{name}: {first[0]}.{field_name} is {first[1]}, {implementation.name}'s {shown}"
                )


def test_every_node_kind_has_a_flow_node_type() -> None:
    graphql_schema = schema._schema
    interface = graphql_schema.get_type("FlowNode")
    assert isinstance(interface, GraphQLInterfaceType)
    kinds = {}  # by name without case: WhatsAppFlowNode is the kind whatsapp_flow
    for implementation in graphql_schema.get_possible_types(interface):
        kinds[implementation.name.lower()] = implementation
    for kind in NODE_TYPES:
        name = kind.replace("_", "") + "node"
        assert name in kinds, f"node kind {kind!r} has no GraphQL type"
        assert {"id", "type", "next"} <= set(kinds[name].fields)


class _Weighted(BaseModel):
    name: str
    weight: int = 1
    next: str | None = None


class SplitNode(_Node):
    """A node kind the document did not have."""

    type: Literal["split"]
    mode: Literal["random", "round_robin"] = "random"
    branches: list[_Weighted] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None


class EchoNode(_Node):
    type: Literal["echo"]
    text: str


class _Document(BaseModel):
    name: str
    nodes: list[Annotated[SplitNode | EchoNode, Field(discriminator="type")]]


def test_a_new_node_kind_becomes_a_graphql_type_by_itself() -> None:
    generated = FlowTypes(_Document, (SplitNode, EchoNode))
    assert set(generated.node_types()) == {"split", "echo"}

    def document() -> Any:
        raw = {
            "name": "A/B",
            "nodes": [
                {"id": "s", "type": "split", "branches": [{"name": "A", "weight": 2, "next": "e"}]},
                {"id": "e", "type": "echo", "text": "hola", "next": None},
            ],
        }
        return generated.convert(_Document.model_validate(raw))

    document.__annotations__ = {"return": generated.types[_Document]}  # a generated type, not a name
    query = strawberry.type(type("Query", (), {"document": strawberry.field(resolver=document)}))
    test_schema = strawberry.Schema(query=query, types=generated.all_types())
    sdl = print_schema(test_schema)
    assert "type SplitNode implements FlowNode" in sdl and "type EchoNode implements FlowNode" in sdl
    assert "branches: [FlowWeighted!]!" in sdl and "meta: JSON!" in sdl
    assert "text: String!" not in sdl  # optional in SplitNode, so in EchoNode too (one type per name)
    split = test_schema._schema.get_type("SplitNode")
    assert isinstance(split, GraphQLObjectType) and FlowNode.__name__ in {i.name for i in split.interfaces}
    result = test_schema.execute_sync(
        "{ document { name nodes { __typename id type next ... on SplitNode { mode meta text branches { name weight next } }"
        " ... on EchoNode { text } } } }"
    )
    assert result.errors is None, result.errors
    assert result.data == {
        "document": {
            "name": "A/B",
            "nodes": [
                {
                    "__typename": "SplitNode",
                    "id": "s",
                    "type": "split",
                    "next": None,
                    "mode": "random",
                    "meta": {},
                    "branches": [{"name": "A", "weight": 2, "next": "e"}],
                    "text": None,
                },
                {"__typename": "EchoNode", "id": "e", "type": "echo", "next": None, "text": "hola"},
            ],
        }
    }
