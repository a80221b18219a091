"""The docs stay complete: every page is in the index, the README links the index, and every
``extensions.code`` the server can answer is explained in ``docs/api.md``."""

from __future__ import annotations

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
