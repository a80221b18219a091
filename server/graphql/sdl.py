"""The schemas' SDL as committed: ``schema.graphql`` (the tenant API) and ``operator.graphql`` (the
operator API, ``/operator/graphql``); ``konvo export-schema`` writes both."""

from __future__ import annotations

from strawberry.printer import print_schema

from server.graphql.operator import operator_schema
from server.graphql.schema import schema

EXPORT_COMMAND = "./scripts/export-schema  (or: uv run konvo export-schema)"


def schema_sdl() -> str:
    return print_schema(schema).rstrip("\n") + "\n"


def operator_sdl() -> str:
    return print_schema(operator_schema).rstrip("\n") + "\n"
