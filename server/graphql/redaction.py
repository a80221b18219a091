"""A GraphQL operation as it may be logged: sensitive arguments and variables redacted.

A client may write secrets inline (``connectWhatsApp(input: {accessToken: "EAAB..."})``) or pass
them in variables, under any variable name. Arguments and input fields with a sensitive name
(``server/redaction.py``) lose their literal value; variables lose their value when a sensitive
argument uses them or when they sit under a sensitive key.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    Node,
    ObjectFieldNode,
    StringValueNode,
    VariableNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from server.redaction import REDACTED, is_sensitive, redact_value


def _variables_in(node: Node) -> set[str]:
    found: set[str] = set()

    class Collect(Visitor):
        def enter_variable(self, variable: VariableNode, *_: Any) -> None:
            found.add(variable.name.value)

    visit(node, Collect())
    return found


class _Redact(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.variables: set[str] = set()

    def _hide(self, node: ArgumentNode | ObjectFieldNode) -> Any:
        if not is_sensitive(node.name.value):
            return None  # unchanged: keep walking
        self.variables |= _variables_in(node.value)
        if isinstance(node.value, VariableNode):
            return None  # the variable's value is redacted instead
        return node.__class__(name=node.name, value=StringValueNode(value=REDACTED))

    def enter_argument(self, node: ArgumentNode, *_: Any) -> Any:
        return self._hide(node)

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> Any:
        return self._hide(node)


def redacted_operation(
    query: str | None, document: DocumentNode | None, variables: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The document (printed) and variables with every sensitive value replaced by ``[redacted]``."""
    if document is None:
        try:
            document = parse(query or "")
        except GraphQLError:
            return f"(a document that does not parse, {len(query or '')} characters)", {}
    redact = _Redact()
    printed = print_ast(visit(document, redact))
    hidden = {
        name: REDACTED if name in redact.variables or is_sensitive(name) else redact_value(value)
        for name, value in (variables or {}).items()
    }
    return " ".join(printed.split()), hidden
