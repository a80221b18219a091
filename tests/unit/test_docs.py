"""The docs stay complete: every page is in the index, the README links the index, every
``extensions.code`` the server can answer is explained in ``docs/api.md``, and the layout and the
design notes name only modules and functions that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import server.web.app  # noqa: F401  (imports every module: every error class is defined)
from server.errors import KonvoError
from server.web.graphql_view import _HTTP_CODES
from tests.support.doc_examples import LANGUAGES, examples

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SERVER = ROOT / "server"


def codes_the_server_answers() -> set[str]:
    """Domain errors' codes, the codes written into GraphQL errors, protocol-level HTTP codes, and
    the codes given to request errors (parse, validation, limits)."""
    codes: set[str] = set()
    pending: list[type[KonvoError]] = [KonvoError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    for path in SERVER.rglob("*.py"):
        text = path.read_text()
        codes |= set(re.findall(r'"code":\s*"([A-Z_]+)"', text))
        codes |= (
            set(re.findall(r'\(\s*"[^"]+",\s*"([A-Z_]+)"\s*\)', text)) if path.name == "errors.py" else set()
        )
        codes |= set(re.findall(r'return "(GRAPHQL_[A-Z_]+)"', text))
    codes |= set(_HTTP_CODES.values())
    return codes


def test_every_error_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", (DOCS / "api.md").read_text(), re.MULTILINE))
    codes = codes_the_server_answers()
    assert {"QUERY_TOO_DEEP", "GRAPHQL_PARSE_FAILED", "WORKSPACE_DISABLED", "RATE_LIMITED"} <= codes
    assert codes - documented == set(), "add these codes to the table in docs/api.md"


def test_the_index_lists_every_page_and_the_readme_links_it() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()


def test_tested_examples_are_well_formed() -> None:
    found = [example for page in sorted(DOCS.glob("*.md")) for example in examples(page)]
    assert found, "docs/api.md has runnable examples"
    for example in found:
        assert example.language in LANGUAGES and example.code.strip()
        assert example.output_kind in (None, "json", "text"), example.name


# ``server/a/b.py`` or ``server/a/`` or ``server/a/b.py::Name.attr``, as the design notes and the
# README write them.
SERVER_PATH = re.compile(r"\bserver/[\w/]*\w(?:\.py)?/?(?:::[\w.]+)?")


def _defined(path: Path, dotted: str) -> bool:
    """Whether ``Name`` or ``Name.attr`` is defined at the top of the module (or in its class)."""
    scope: list[ast.stmt] = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        found = next((node for node in scope if _name_of(node) == part), None)
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return True


def _name_of(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def test_every_server_path_and_name_the_design_notes_and_readme_cite_exists() -> None:
    cited = []
    for page in (DOCS / "design.md", ROOT / "README.md"):
        cited += [(page.name, match) for match in SERVER_PATH.findall(page.read_text())]
    assert len(cited) > 50, "docs/design.md cites the modules and functions it describes"
    missing = []
    for page, reference in cited:
        where, _, name = reference.partition("::")
        path = ROOT / where
        if not path.exists():
            missing.append(f"{page}: {reference}")
        elif name and not _defined(path, name):
            missing.append(f"{page}: {reference} (no {name} there)")
    assert missing == []


MODULE_NAME = re.compile(r"\b[a-z_]+(?:\.py\b|/(?![a-z]))")  # a module or a package, not "pub/sub"


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout") :]
    block = section[section.index("```\nserver/") + 4 :]
    return block[: block.index("```")].splitlines()


def test_the_readme_layout_names_every_module_of_the_server_and_nothing_else() -> None:
    """Each entry line of the layout (indented two spaces) names modules and packages of
    ``server/`` before its description: together they are exactly what ``server/`` holds."""
    named: set[str] = set()
    server_lines = _layout_block()[1:]  # below ``server/``
    server_lines = server_lines[
        : next(i for i, line in enumerate(server_lines) if line.startswith("scripts/"))
    ]
    for line in server_lines:
        if line.startswith("  ") and not line.startswith("   "):
            left = line.strip().split("  ", 1)[0]  # the names, before the description
            named |= set(MODULE_NAME.findall(left))
    # Modules the descriptions mention (``validator.py``, ``flow_checks/``) exist somewhere in server/.
    mentioned = {name for line in server_lines for name in MODULE_NAME.findall(line)}
    assert sorted(n for n in mentioned if not any(SERVER.rglob(n.rstrip("/")))) == []
    actual = {
        p.name + ("/" if p.is_dir() else "")
        for p in SERVER.iterdir()
        if p.name != "__init__.py" and not p.name.startswith((".", "__pycache__"))
    }
    assert sorted(named - actual) == [], "the README's layout names what server/ no longer has"
    assert sorted(actual - named) == [], "add these to the README's layout"
