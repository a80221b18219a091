"""The static cost of a GraphQL operation: how many objects it can make the server produce.

Computed from the parsed document before anything executes, so a query that would fan out
(``contact { runs { contact { runs ... }}}``, or the same through 30 aliases) is refused for
what it asks, not for what it turned out to cost.

- every object (or list of objects) a field returns costs 1 per object; scalars and enums cost 0;
- a list field returns ``first``/``last`` objects when it takes that argument, otherwise
  ``DEFAULT_LIST_SIZE`` (the default page size; a contact keeps at most 20 ended runs); the
  ``edges`` of a connection take their size from the connection's ``first``/``last``;
- everything below a list is multiplied by its size, so nested lists multiply;
- each root mutation field costs ``MUTATION_WEIGHT`` more (it writes);
- fragments (named and inline) and aliases count like the fields they stand for; introspection
  (``__schema``, ``__type``, ``__typename``) is free: the token limit bounds it.

Cost is linear in each list size, so a named fragment is costed once per connection size it
appears under, however many times it is spread: the analysis is linear in the document.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)
from graphql.utilities import get_operation_ast

DEFAULT_LIST_SIZE = 20
MUTATION_WEIGHT = 10
MAX_LIST_ESTIMATE = 1_000_000  # keeps the numbers sane for absurd ``first`` values (refused anyway)
_SIZE_ARGUMENTS = ("first", "last")


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: dict[str, Any] | None = None,
) -> int:
    """The cost of the operation ``operation_name`` selects in ``document`` (0 when none does)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    return _Costing(schema, document, variables or {}).operation(operation)


class _Costing:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.defaults: dict[str, ValueNode] = {}
        self.costed: dict[tuple[str, int | None], int] = {}
        self.expanding: set[str] = set()  # fragment cycles are invalid; never loop on one

    def operation(self, operation: OperationDefinitionNode) -> int:
        for definition in operation.variable_definitions or ():
            if definition.default_value is not None:
                self.defaults[definition.variable.name.value] = definition.default_value
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        cost = self.selections(root, operation.selection_set, None)
        if operation.operation == OperationType.MUTATION:
            cost += MUTATION_WEIGHT * self.root_fields(operation.selection_set)
        return cost

    def root_fields(self, selection_set: SelectionSetNode) -> int:
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += not selection.name.value.startswith("__")
            elif isinstance(selection, InlineFragmentNode):
                count += self.root_fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and fragment.name.value not in self.expanding:
                    self.expanding.add(fragment.name.value)
                    count += self.root_fields(fragment.selection_set)
                    self.expanding.discard(fragment.name.value)
        return count

    def selections(
        self, parent: GraphQLType, selection_set: SelectionSetNode | None, page: int | None
    ) -> int:
        """Cost of one object's selections; ``page`` sizes the lists of a connection."""
        if selection_set is None:
            return 0
        total = 0
        typed: list[tuple[GraphQLNamedType, int]] = []  # fragments on a narrower type than parent
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection, page)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else None
                cost = self.selections(target or parent, selection.selection_set, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                target = self.schema.get_type(fragment.type_condition.name.value) if fragment else None
                cost = self.fragment(selection.name.value, page)
            else:
                continue
            if target is None or target is get_named_type(parent):
                total += cost
            else:
                typed.append((target, cost))
        return total + self.widest(parent, typed)

    def widest(self, parent: GraphQLType, typed: list[tuple[GraphQLNamedType, int]]) -> int:
        """Each object is of one concrete type, so of the fragments on narrower types only those
        that apply to one type add up (``... on MessageNode`` and ``... on TemplateNode`` under a
        list of ``FlowNode`` cost the larger of the two per node, not both)."""
        if not typed:
            return 0
        named = get_named_type(parent)
        concrete = list(self.schema.get_possible_types(named)) if is_abstract_type(named) else [named]
        best = 0
        for kind in concrete:
            applies = (
                cost
                for target, cost in typed
                if target is kind or (is_abstract_type(target) and self.schema.is_sub_type(target, kind))
            )
            best = max(best, sum(applies))
        return best

    def fragment(self, name: str, page: int | None) -> int:
        known = self.costed.get((name, page))
        if known is not None:
            return known
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanding:
            return 0
        self.expanding.add(name)
        try:
            target = self.schema.get_type(fragment.type_condition.name.value)
            cost = self.selections(target, fragment.selection_set, page) if target else 0
        finally:
            self.expanding.discard(name)
        self.costed[(name, page)] = cost
        return cost

    def field(self, parent: GraphQLType, node: FieldNode, page: int | None) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition: GraphQLField | None = parent.fields.get(name)
        if definition is None:
            return 0  # validation reports it
        returned = get_named_type(definition.type)
        if is_leaf_type(returned):
            return 0
        size = self.size_argument(node)
        if _is_list(definition.type):
            count = size if size is not None else page if page is not None else DEFAULT_LIST_SIZE
            return count * (1 + self.selections(returned, node.selection_set, None))
        # An object: a connection passes its first/last on to its edges.
        return 1 + self.selections(returned, node.selection_set, size)

    def size_argument(self, node: FieldNode) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value in _SIZE_ARGUMENTS:
                value = self.int_value(argument.value)
                if value is not None:
                    return max(0, min(value, MAX_LIST_ESTIMATE))
        return None

    def int_value(self, node: ValueNode) -> int | None:
        if isinstance(node, IntValueNode):
            try:
                return int(node.value)
            except ValueError:
                return None
        if isinstance(node, VariableNode):
            name = node.name.value
            if name not in self.variables:
                default = self.defaults.get(name)
                return self.int_value(default) if isinstance(default, IntValueNode) else None
            value = self.variables[name]
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        return None


def _is_list(field_type: GraphQLType) -> bool:
    while isinstance(field_type, GraphQLNonNull | GraphQLList):
        if isinstance(field_type, GraphQLList):
            return True
        field_type = field_type.of_type
    return False
