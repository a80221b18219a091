"""Walk the served GraphQL schema to build operations for every root field.

Generic tests (cross-workspace isolation, AGENT role, fuzzing) use this so that fields added
later are covered without touching the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLType,
    get_named_type,
    is_required_argument,
)
from strawberry.types.field import StrawberryField

ROOTS = ("query", "mutation", "subscription")


@dataclass(frozen=True)
class RootField:
    operation: str  # query | mutation | subscription
    name: str
    field: GraphQLField

    @property
    def definition(self) -> StrawberryField | None:
        return (self.field.extensions or {}).get("strawberry-definition")

    def __repr__(self) -> str:
        return f"{self.operation}.{self.name}"


def root_fields(schema: GraphQLSchema) -> list[RootField]:
    found = []
    for operation in ROOTS:
        root = getattr(schema, f"{operation}_type")
        if root is not None:
            found += [RootField(operation, name, field) for name, field in root.fields.items()]
    return found


def selection(type_: GraphQLType, depth: int = 1) -> str:
    """A selection of every scalar field (and objects down to ``depth``) without required args;
    an interface's own fields (run steps, flow nodes) like an object's."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return ""
    parts = []
    for name, field in named.fields.items():
        if any(is_required_argument(a) for a in field.args.values()):
            continue
        inner = get_named_type(field.type)
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            parts.append(name)
        elif depth > 0 and isinstance(inner, GraphQLObjectType | GraphQLInterfaceType):
            nested = selection(inner, depth - 1)
            if nested:
                parts.append(f"{name} {nested}")
    if not parts:
        parts = ["__typename"]
    return "{ " + " ".join(parts) + " }"


ValueFor = Callable[[str, GraphQLType], Any]


def sample_value(arg_name: str, type_: GraphQLType, value_for: ValueFor) -> Any:
    """A value of ``type_``; ``value_for`` may decide for ID / String leaves (e.g. foreign ids)."""
    if isinstance(type_, GraphQLNonNull):
        return sample_value(arg_name, type_.of_type, value_for)
    if isinstance(type_, GraphQLList):
        return [sample_value(arg_name, type_.of_type, value_for)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: sample_value(name, field.type, value_for)
            for name, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull) or name in ("id", "phone")
        }
    return value_for(arg_name, type_)


def default_leaf(arg_name: str, type_: GraphQLType) -> Any:
    name = get_named_type(type_).name
    return {"Int": 1, "Float": 1.0, "Boolean": True, "JSON": {}, "DateTime": "2030-01-01T00:00:00+00:00"}.get(
        name, "x"
    )


def operation(root: RootField, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A document calling ``root`` with ``arguments`` passed as variables."""
    declared = ", ".join(f"${name}: {root.field.args[name].type}" for name in arguments)
    passed = ", ".join(f"{name}: ${name}" for name in arguments)
    head = f"{root.operation}({declared})" if declared else root.operation
    call = f"{root.name}({passed})" if passed else root.name
    return f"{head} {{ {call} {selection(root.field.type)} }}", arguments


def required_arguments(root: RootField, value_for: ValueFor) -> dict[str, Any]:
    return {
        name: sample_value(name, arg.type, value_for)
        for name, arg in root.field.args.items()
        if is_required_argument(arg)
    }


def id_like_arguments(root: RootField) -> Iterator[str]:
    """Arguments that point at a stored object: IDs, phone numbers and WhatsApp ids (also in input
    objects)."""
    for name, arg in root.field.args.items():
        named = get_named_type(arg.type)
        if named.name == "ID" or name.lower().endswith("phone") or name == "whatsappId":
            yield name
        elif isinstance(named, GraphQLInputObjectType) and any(
            get_named_type(f.type).name == "ID" or n.lower().endswith("phone")
            for n, f in named.fields.items()
        ):
            yield name


def harvest_selection(type_: GraphQLType) -> str:
    return selection(type_, depth=3)
