"""Turn exceptions into GraphQL errors with ``extensions.code``; never leak a traceback.

And log them the way an operator can use: an expected client error (a ``KonvoError``, a request
the schema refuses, a limit) is one line with its code, never a traceback; only an internal
error logs its traceback, with the operation's sensitive arguments and variables redacted
(``server/graphql/redaction.py``). strawberry's default logs every error with its traceback and
the document's source line, literals included.
"""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql.error import GraphQLError, GraphQLSyntaxError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from server.errors import KonvoError
from server.graphql.redaction import redacted_operation

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


def expected_code(error: GraphQLError) -> str | None:
    """The code of an error the caller caused (or a backing service), None for an internal one."""
    original = error.original_error
    if original is None:
        return str((error.extensions or {}).get("code") or request_error_code(error))
    if isinstance(original, KonvoError):
        return original.code
    if isinstance(original, ValidationError) or _is_input_coercion(error):
        return "INVALID_INPUT"
    if isinstance(original, GraphQLError):
        return expected_code(original)
    return None


def _where(error: GraphQLError) -> str:
    if error.path:
        return ".".join(str(part) for part in error.path)
    if error.locations:
        return ",".join(f"{loc.line}:{loc.column}" for loc in error.locations)
    return "-"


def log_errors(errors: list[GraphQLError], context: ExecutionContext | None) -> None:
    """One line per expected error (its code; a domain error's own message, which is ours; never the
    request's text, which may quote a caller's secret); a traceback only for an internal one."""
    operation = getattr(context, "operation_name", None) or "-"
    for error in errors:
        code = expected_code(error)
        if code is not None:
            original = error.original_error
            said = f": {original.message}" if isinstance(original, KonvoError) else ""
            level = logging.WARNING if code == "UNAVAILABLE" else logging.INFO
            log.log(level, "graphql %s in %s at %s%s", code, operation, _where(error), said)
            continue
        document, variables = _operation(context)
        log.error(
            "graphql INTERNAL in %s at %s; operation: %s; variables: %s",
            operation,
            _where(error),
            document,
            variables,
            exc_info=error.original_error,
        )


def _operation(context: ExecutionContext | None) -> tuple[str, dict[str, Any]]:
    if context is None:
        return "-", {}
    try:
        document = context.graphql_document
    except Exception:
        document = None
    return redacted_operation(context.query, document, context.variables)


class CodedSchema(strawberry.Schema):
    """strawberry's schema, logging errors with ``log_errors``."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


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
        # Logged (with its traceback) by ``log_errors``, before this masking.
        return GraphQLError(
            "internal error",
            error.nodes,
            error.source,
            error.positions,
            error.path,
            None,
            {"code": "INTERNAL"},
        )
