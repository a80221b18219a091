"""A frontend's TypeScript client type-checks against ``schema.graphql`` (issue 17).

GraphQL Code Generator (npm, pinned in ``tests/js/package-lock.json``) generates the types of the
operations in ``tests/js/client/operations`` from the committed schema; ``tsc`` (strict) compiles
the client modules that use ``flow.definition``, run steps and messages. No generated type may be
``any``: custom scalars are mapped (``JSON`` to ``unknown``), node kinds and step actions are
unions over ``__typename``. Node and the packages are required: a missing tool fails the test
(``./scripts/test`` installs ``tests/js`` with npm first), it is never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KONVO_SCHEMA": str(REPO / "schema.graphql"), "NO_COLOR": "1"}
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
    for kind in NODE_TYPES:  # every node kind is a member of the node union
        assert "Node_" + "".join(part.title() for part in kind.split("_")) + "Node_Fragment" in nodes.group(1)
    steps = re.search(r"export type StepFieldsFragment = ([^;]+);", code)
    assert steps is not None
    assert {f"StepFields_{t.__name__}_Fragment" for t in ALL_STEP_TYPES} == set(steps.group(1).split(" | "))

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
