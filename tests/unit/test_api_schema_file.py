"""``schema.graphql`` at the repo root is the schema the code serves, so frontends can trust it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from server.cli import app
from server.graphql.sdl import EXPORT_COMMAND, schema_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_code() -> None:
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert current == schema_sdl(), f"schema.graphql is out of date; regenerate it with: {EXPORT_COMMAND}"


def test_schema_file_has_the_api_contract_roots() -> None:
    sdl = schema_sdl()
    for name in ("type Query", "type Mutation", "type Subscription", "createApiKey(", "contactUpdated("):
        assert name in sdl


def test_export_schema_command_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    runner = CliRunner()
    assert runner.invoke(app, ["export-schema", "--check", "--output", str(target)]).exit_code == 1
    written = runner.invoke(app, ["export-schema", "--output", str(target)])
    assert written.exit_code == 0 and target.read_text() == schema_sdl()
    assert runner.invoke(app, ["export-schema", "--check", "--output", str(target)]).exit_code == 0
