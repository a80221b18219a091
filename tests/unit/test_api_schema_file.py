"""``schema.graphql`` at the repo root is the schema the code serves, so frontends can trust it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from server.cli import app
from server.graphql.sdl import EXPORT_COMMAND, operator_sdl, schema_sdl

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"
OPERATOR_SCHEMA_FILE = SCHEMA_FILE.with_name("operator.graphql")


def test_schema_file_matches_the_code() -> None:
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert current == schema_sdl(), f"schema.graphql is out of date; regenerate it with: {EXPORT_COMMAND}"


def test_operator_schema_file_matches_the_code() -> None:
    current = OPERATOR_SCHEMA_FILE.read_text() if OPERATOR_SCHEMA_FILE.exists() else ""
    assert current == operator_sdl(), f"operator.graphql is out of date; regenerate it with: {EXPORT_COMMAND}"


def test_operator_fields_are_not_in_the_tenant_schema() -> None:
    """Workspace keys can never reach operator operations: the tenant schema does not have them."""
    tenant = schema_sdl()
    for name in ("createWorkspace", "disableWorkspace", "enableWorkspace", "deleteWorkspace", "workspaces("):
        assert name in operator_sdl()
        assert name not in tenant


def test_schema_file_has_the_api_contract_roots() -> None:
    sdl = schema_sdl()
    for name in ("type Query", "type Mutation", "type Subscription", "createApiKey(", "contactUpdated("):
        assert name in sdl


def test_export_schema_command_writes_and_checks(tmp_path: Path) -> None:
    target, operator = tmp_path / "schema.graphql", tmp_path / "operator.graphql"
    paths = ["--output", str(target), "--operator-output", str(operator)]
    runner = CliRunner()
    assert runner.invoke(app, ["export-schema", "--check", *paths]).exit_code == 1
    written = runner.invoke(app, ["export-schema", *paths])
    assert written.exit_code == 0 and target.read_text() == schema_sdl()
    assert operator.read_text() == operator_sdl()
    assert runner.invoke(app, ["export-schema", "--check", *paths]).exit_code == 0
    operator.write_text("")
    assert runner.invoke(app, ["export-schema", "--check", *paths]).exit_code == 1
