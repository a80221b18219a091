"""Turn exceptions into GraphQL errors with ``extensions.code``; never leak a traceback."""

from __future__ import annotations

import logging

from graphql.error import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors

from server.errors import KonvoError

log = logging.getLogger(__name__)


def _always(_: GraphQLError) -> bool:
    return True


class CodedErrors(MaskErrors):
    """Domain errors keep their message and gain their code; anything unexpected is masked."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_always, error_message="internal error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None:
            extensions = dict(error.extensions or {})
            extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
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
