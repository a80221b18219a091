"""The flow document as GraphQL types, generated from its pydantic models (``Flow.definition``).

API.md says the GraphQL types mirror the flow document one to one; ``Flow.draft`` is the same
document as untyped JSON (kept for import and export). Every node kind of the ``Node`` union in
``server/machines/definition.py`` becomes a type implementing ``FlowNode`` (``id``, ``type``,
``next``), named as its model (``MessageNode``); every other model becomes ``Flow<Model>``
(``FlowButton``, ``FlowNoReply``...). Field names are camelCase of the document's keys
(``on_reply`` -> ``onReply``, ``for`` stays ``for``).

Adding a node kind needs nothing here: add its model to ``Node`` and the schema has its type
(run ``./scripts/export-schema``). Field types map as: text, numbers and booleans as such,
``Literal`` choices as ``String`` (the choices in its description), lists and nested models as
lists and types, and anything else (segments, free values) as ``JSON``. A value the document may
give either as an object or in a short form (a template header given as text) is the object's
type, the short form in its ``value`` field. A field name that is optional in one node kind is
optional in all that have it: GraphQL refuses a query asking two same-named fields whose
types differ, and an editor asks every node kind at once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import strawberry
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from strawberry.scalars import JSON

from server.machines.definition import FlowDefinition, Node

Convert = Callable[[Any], Any]

# The fields every node has: the interface's, listed first in each node type.
INTERFACE_FIELDS = ("id", "type", "next")
SHORT_FORM = "value"


@strawberry.interface(
    description="a node of a flow document; the concrete type is its kind (MessageNode, DelayNode...)"
)
class FlowNode:
    id: str
    type: str = strawberry.field(description="the node kind as the document writes it: message, delay...")
    next: str | None = strawberry.field(description="the node after it; null ends the run")


def node_models() -> tuple[type[BaseModel], ...]:
    """The pydantic model of every node kind, in the order of the ``Node`` union."""
    union = typing.get_args(Node)[0]  # Annotated[Union[...], Field(discriminator="type")]
    return tuple(typing.get_args(union))


def camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class FlowTypes:
    """One strawberry type per pydantic model reached from ``root``; ``nodes`` implement ``FlowNode``."""

    def __init__(self, root: type[BaseModel], nodes: tuple[type[BaseModel], ...]) -> None:
        self.root = root
        self.nodes = nodes
        self.types: dict[type[BaseModel], type] = {}
        self.converters: dict[type[BaseModel], Convert] = {}
        self.short_forms: set[type[BaseModel]] = set()  # models also given as a bare value
        self._building: set[type[BaseModel]] = set()
        self._optional_in_some = self._names_optional_in_some_node()
        self._find_short_forms(root, set())
        self.type_of(root)
        for node in nodes:
            self.type_of(node)

    def _names_optional_in_some_node(self) -> set[str]:
        optional: dict[str, set[bool]] = {}
        for node in self.nodes:
            for attribute, info in node.model_fields.items():
                optional.setdefault(camel(info.alias or attribute), set()).add(_allows_none(info.annotation))
        return {name for name, seen in optional.items() if True in seen}

    def node_types(self) -> dict[str, type]:
        """Node kind ("message") -> its GraphQL type."""
        return {typing.get_args(m.model_fields["type"].annotation)[0]: self.types[m] for m in self.nodes}

    def convert(self, document: BaseModel) -> Any:
        """The GraphQL object of a parsed document (of ``root``)."""
        return self.converters[type(document)](document)

    def all_types(self) -> list[type]:
        return list(dict.fromkeys(self.types.values()))

    # -- which models take a short form (a bare value instead of the object) --

    def _find_short_forms(self, model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
        if model in seen:
            return
        seen.add(model)
        for info in model.model_fields.values():
            self._scan(info.annotation, seen)

    def _scan(self, annotation: Any, seen: set[type[BaseModel]]) -> None:
        annotation = _strip_annotated(annotation)
        members = [_strip_annotated(a) for a in typing.get_args(annotation)]
        if _is_model(annotation):
            self._find_short_forms(annotation, seen)
            return
        models = [m for m in members if _is_model(m)]
        others = [m for m in members if not _is_model(m) and m is not type(None)]
        if self._is_union(annotation) and len(models) == 1 and others:
            if SHORT_FORM not in models[0].model_fields:
                self.short_forms.add(models[0])
        for member in members:
            self._scan(member, seen)

    @staticmethod
    def _is_union(annotation: Any) -> bool:
        return typing.get_origin(annotation) in (Union, types.UnionType)

    # -- types --

    def name_of(self, model: type[BaseModel]) -> str:
        if model in self.nodes or model.__name__.startswith("Flow"):
            return model.__name__
        return "Flow" + model.__name__

    def type_of(self, model: type[BaseModel]) -> type:
        if model not in self.types:
            if model in self._building:
                raise TypeError(f"{model.__name__} contains itself: flow models are trees")
            self._building.add(model)
            self._build(model)
        return self.types[model]

    def _build(self, model: type[BaseModel]) -> None:
        is_node = model in self.nodes
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {"__annotations__": annotations, "__module__": __name__}
        converters: dict[str, tuple[str, Convert]] = {}
        for attribute, info in model.model_fields.items():
            field_type, convert_field, choices = self._map(info.annotation)
            converters[attribute] = (attribute, convert_field)
            if is_node and attribute in INTERFACE_FIELDS:
                continue  # declared by FlowNode
            if is_node and camel(info.alias or attribute) in self._optional_in_some:
                field_type = _maybe(field_type, not _allows_none(field_type))
            annotations[attribute] = field_type
            namespace[attribute] = strawberry.field(
                name=camel(info.alias or attribute), description=_describe(info, choices)
            )
        if model in self.short_forms:
            annotations[SHORT_FORM] = Optional[str]  # noqa: UP045 (a services annotation object)
            namespace[SHORT_FORM] = strawberry.field(
                default=None, description="the short form, when the document gives a bare value instead"
            )
        bases = (FlowNode,) if is_node else ()
        built = strawberry.type(
            type(self.name_of(model), bases, namespace), description=_first_line(model.__doc__)
        )
        self.types[model] = built
        names = {attribute: attribute for attribute in converters}

        def convert(value: Any) -> Any:
            if not isinstance(value, model):
                if model in self.short_forms:
                    blank = {name: None for name in names}
                    return built(**blank, **{SHORT_FORM: None if value is None else str(value)})
                value = model.model_validate({SHORT_FORM: value})  # e.g. set_variable's bare value
            fields = {
                attribute: conv(getattr(value, source)) for attribute, (source, conv) in converters.items()
            }
            if model in self.short_forms:
                fields[SHORT_FORM] = None
            return built(**fields)

        self.converters[model] = convert

    def _map(self, annotation: Any) -> tuple[Any, Convert, tuple[Any, ...]]:
        """(strawberry annotation, converter of a value, Literal choices) of a pydantic annotation."""
        annotation = _strip_annotated(annotation)
        origin = typing.get_origin(annotation)
        if annotation in (str, int, float, bool):
            return annotation, _same, ()
        if origin is Literal:
            choices = typing.get_args(annotation)
            return str, _text, choices
        if _is_model(annotation):
            self.type_of(annotation)
            return self.types[annotation], self._convert_model(annotation), ()
        if origin is list:
            (item,) = typing.get_args(annotation) or (Any,)
            item_type, item_convert, choices = self._map(item)
            return list[item_type], _each(item_convert), choices  # type: ignore[valid-type]
        if self._is_union(annotation):
            members = [_strip_annotated(a) for a in typing.get_args(annotation)]
            optional = type(None) in members
            rest = [m for m in members if m is not type(None)]
            if rest and all(m in self.nodes for m in rest):
                return _maybe(FlowNode, optional), self._convert_node, ()
            models = [m for m in rest if _is_model(m)]
            if len(rest) == 1:
                inner, convert, choices = self._map(rest[0])
                return _maybe(inner, optional), _or_none(convert), choices
            if len(models) == 1:  # an object or its short form
                self.type_of(models[0])
                return _maybe(self.types[models[0]], optional), _or_none(self._convert_model(models[0])), ()
        if annotation is Any:  # a free value: null too
            return Optional[JSON], _json, ()  # noqa: UP045 (a services annotation object)
        return JSON, _json, ()  # segments, and whatever else may come

    def _convert_model(self, model: type[BaseModel]) -> Convert:
        return lambda value: self.converters[model](value)

    def _convert_node(self, value: Any) -> Any:
        return self.converters[type(value)](value) if value is not None else None


def _allows_none(annotation: Any) -> bool:
    annotation = _strip_annotated(annotation)
    return annotation is Any or type(None) in typing.get_args(annotation)


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def _each(convert: Convert) -> Convert:
    return lambda values: [convert(v) for v in values or []]


def _or_none(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _maybe(annotation: Any, optional: bool) -> Any:
    return Optional[annotation] if optional else annotation  # noqa: UP045 (services annotation object)


def _first_line(doc: str | None) -> str | None:
    return doc.strip().split("\n\n")[0].replace("\n", " ") if doc else None


def _describe(info: FieldInfo, choices: tuple[Any, ...]) -> str | None:
    parts = [info.description] if info.description else []
    if choices:
        parts.append("one of: " + ", ".join(str(c) for c in choices))
    default = info.get_default(call_default_factory=False) if not info.is_required() else dataclasses.MISSING
    if isinstance(default, bool):
        parts.append(f"default {str(default).lower()}")
    elif default not in (dataclasses.MISSING, None) and isinstance(default, str | int | float):
        parts.append(f"default {default}")
    return "; ".join(parts) or None


FLOW_TYPES = FlowTypes(FlowDefinition, node_models())
FlowDefinitionType = FLOW_TYPES.types[FlowDefinition]


def flow_definition(definition: FlowDefinition) -> Any:
    """The GraphQL object of a parsed flow document."""
    return FLOW_TYPES.convert(definition)


def all_types() -> list[type]:
    """Every generated type: the schema must list the node types (reached only via ``FlowNode``)."""
    return FLOW_TYPES.all_types()
