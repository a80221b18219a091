"""Turn exceptions into GraphQL errors with ``extensions.code``; never leak a traceback."""

from __future__ import annotations

import logging

from graphql.error import GraphQLError, GraphQLSyntaxError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors

from server.errors import KonvoError

log = logging.getLogger(__name__)


def _always(_: GraphQLError) -> bool:
    return True


# graphql-core and strawberry's limiters give these only as messages; tests pin the wording.
_LIMIT_CODES = (
    ("exceeds maximum operation depth", "QUERY_TOO_DEEP"),
    ("aliases found. Allowed", "TOO_MANY_ALIASES"),
    ("Parsing aborted", "QUERY_TOO_LARGE"),
)


def request_error_code(error: GraphQLError) -> str:
    """The code of an error in the request itself (syntax, validation, a limit), not a resolver."""
    for fragment, code in _LIMIT_CODES:
        if fragment in error.message:
            return code
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED"


def _is_input_coercion(error: GraphQLError) -> bool:
    """Variable/argument values the schema cannot accept: the caller's mistake, message is safe."""
    return error.path is None and error.message.startswith(("Variable '$", "Argument '"))


class CodedErrors(MaskErrors):
    """Domain errors keep their message and gain their code; anything unexpected is masked."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_always, error_message="internal error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None or (not isinstance(original, KonvoError) and _is_input_coercion(error)):
            extensions = dict(error.extensions or {})
            extensions.setdefault("code", "INVALID_INPUT" if original else request_error_code(error))
            return GraphQLError(
                error.message, error.nodes, error.source, error.positions, error.path, None, extensions
            )
        if isinstance(original, KonvoError):
            extensions = {"code": original.code, **original.details}
            return GraphQLError(
                original.message, error.nodes, error.source, error.positions, error.path, None, extensions
            )
        if isinstance(original, ValidationError):
            first = original.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return GraphQLError(
                f"{where}: {first['msg']}",
                error.nodes,
                error.source,
                error.positions,
                error.path,
                None,
                {"code": "INVALID_INPUT"},
            )
        if isinstance(original, GraphQLError):
            return self.anonymise_error(original)
        log.error("unexpected error in GraphQL resolver", exc_info=original)
        return GraphQLError(
            "internal error",
            error.nodes,
            error.source,
            error.positions,
            error.path,
            None,
            {"code": "INTERNAL"},
        )
