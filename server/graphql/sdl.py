"""The schema's SDL as committed in ``schema.graphql`` (``konvo export-schema`` writes it)."""

from __future__ import annotations

from strawberry.printer import print_schema

from server.graphql.schema import schema

EXPORT_COMMAND = "./scripts/export-schema  (or: uv run konvo export-schema)"


def schema_sdl() -> str:
    return print_schema(schema).rstrip("\n") + "\n"
