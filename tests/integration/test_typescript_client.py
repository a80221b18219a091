"""A frontend's TypeScript client type-checks against ``schema.graphql`` (issue 17).

GraphQL Code Generator (npm, pinned in ``tests/js/package-lock.json``) generates the types of the
operations in ``tests/js/client/operations`` from the committed schema; ``tsc`` (strict) compiles
the client modules that use ``flow.definition``, run steps, messages, the contacts listing (paged by
cursor), flow analytics (the funnel, the live subscription) and ``simulateFlow`` transcripts. No
generated type may be ``any``: custom scalars are mapped (``JSON`` to ``unknown``), node kinds and
step actions are unions over ``__typename``. A field the client reads that the schema retypes
fails the compile (a renamed one already fails code generation). Node and the packages are required: a missing tool fails the test
(``./scripts/test`` installs ``tests/js`` with npm first), it is never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from server.graphql.flow_document import FLOW_TYPES
from server.graphql.run_steps import ALL_STEP_TYPES
from server.machines.definition import NODE_TYPES

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "tests" / "js"
CLIENT = JS / "client"
GENERATED = CLIENT / "generated" / "graphql.ts"


def tool(name: str) -> str:
    path = JS / "node_modules" / ".bin" / name
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the TypeScript client check needs Node 18+ and npm")
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm ci --prefix tests/js` (./scripts/test does)")
    return str(path)


def run(*command: str, cwd: Path, schema: Path = REPO / "schema.graphql") -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KONVO_SCHEMA": str(schema), "NO_COLOR": "1"}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def without_comments(source: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", source, flags=re.S))


def test_generated_types_have_no_any_and_the_client_compiles(tmp_path: Path) -> None:
    generated = run(tool("graphql-codegen"), "--config", "codegen.js", cwd=JS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    code = without_comments(GENERATED.read_text(encoding="utf-8"))
    assert re.search(r"\bany\b", code) is None, "a generated type is `any`"
    nodes = re.search(r"export type NodeFragment = ([^;]+);", code)
    assert nodes is not None
    graphql_names = {kind: t.__strawberry_definition__.name for kind, t in FLOW_TYPES.node_types().items()}
    assert set(graphql_names) == set(NODE_TYPES)
    # every node kind (whatsapp_flow is WhatsAppFlowNode) is a member of the node union
    assert {f"Node_{name}_Fragment" for name in graphql_names.values()} == set(nodes.group(1).split(" | "))
    steps = re.search(r"export type StepFieldsFragment = ([^;]+);", code)
    assert steps is not None
    assert {f"StepFields_{t.__name__}_Fragment" for t in ALL_STEP_TYPES} == set(steps.group(1).split(" | "))
    for operation in (
        "ContactsPageQuery",
        "PerformanceFragment",
        "FlowPerformanceUpdatedSubscription",
        "SimulateFlowQuery",
    ):
        assert f"export type {operation} = " in code, operation
    assert "exportContact: unknown" in code  # JSON answers are unknown: a client checks them before use

    compiled = run(tool("tsc"), "-p", "client", cwd=JS)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr

    # The check can fail: reading a field a node kind does not have does not compile.
    copy = tmp_path / "client"
    shutil.copytree(CLIENT, copy)
    (copy / "wrong.ts").write_text(
        'import type { NodeFragment } from "./generated/graphql.js";\n'
        "export const wrong = (node: NodeFragment): string | null =>\n"
        '  node.__typename === "DelayNode" ? node.text : null;\n',
        encoding="utf-8",
    )
    refused = run(tool("tsc"), "-p", str(copy), cwd=JS)
    assert refused.returncode != 0 and "Property 'text' does not exist" in refused.stdout, refused.stdout


def retyped(schema: str, type_name: str, field: str, new_type: str) -> str:
    """The schema with one field of one object type declared as another type."""
    block = re.search(rf"^type {type_name} \{{\n.*?^\}}", schema, flags=re.S | re.M)
    assert block is not None, type_name
    changed, count = re.subn(rf"^  {field}: .+$", f"  {field}: {new_type}", block.group(0), flags=re.M)
    assert count == 1, f"{type_name}.{field}"
    return schema[: block.start()] + changed + schema[block.end() :]


def test_a_retyped_field_the_client_uses_fails_the_compile(tmp_path: Path) -> None:
    """Contacts, analytics and simulation code really depends on the generated field types."""
    schema = (REPO / "schema.graphql").read_text(encoding="utf-8")
    for type_name, field, new_type in (
        ("ContactConnection", "totalCount", "String!"),
        ("MessageFunnel", "delivered", "String!"),
        ("SimulatedStep", "tags", "[Int!]!"),
    ):
        schema = retyped(schema, type_name, field, new_type)
    scratch_schema = tmp_path / "schema.graphql"
    scratch_schema.write_text(schema, encoding="utf-8")
    js = tmp_path / "js"
    shutil.copytree(CLIENT, js / "client", ignore=shutil.ignore_patterns("generated"))
    for name in ("codegen.js", "package.json"):  # package.json: the modules are ES modules
        shutil.copy(JS / name, js / name)
    (js / "node_modules").symlink_to(JS / "node_modules", target_is_directory=True)

    generated = run(tool("graphql-codegen"), "--config", "codegen.js", cwd=js, schema=scratch_schema)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    compiled = run(tool("tsc"), "-p", "client", cwd=js)
    assert compiled.returncode != 0
    failing = {line.split("(", 1)[0] for line in compiled.stdout.splitlines() if ": error TS" in line}
    assert failing == {"client/contacts.ts", "client/analytics.ts", "client/simulation.ts"}, compiled.stdout
