"""``{{contact.x}}``, ``{{trigger.a.b}}`` and ``{{run.reply}}`` rendering with missing-value warnings.

A placeholder may name a format after a bar (``{{contact.birthday|date:long}}``,
``{{contact.total|number:2}}``); values are written in the workspace's locale and time zone
(``server.machines.formats``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from server.documents import RunDoc
from server.machines.formats import Format, FormatError, parse_format, write_value
from server.machines.regional import Regional

_PLACEHOLDER = re.compile(
    r"\{\{\s*([a-zA-Z_][\w]*(?:\.[\w\-]+)*)\s*"
    r"(?:\|\s*([A-Za-z_]\w*)\s*(?::((?:(?!\}\}).)*?))?\s*)?\}\}"
)
_DEFAULT_REGIONAL = Regional()


def lookup(path: list[str], root: Any) -> Any:
    """Follow dotted ``path`` through dicts and lists (numeric parts index lists)."""
    current = root
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def scope_value(name: str, contact: Mapping[str, Any], run: RunDoc) -> Any:
    head, _, rest = name.partition(".")
    parts = rest.split(".") if rest else []
    if head == "contact":
        if parts in (["phone"], ["name"]):
            return contact.get(parts[0])
        return lookup(parts, contact.get("variables", {}))
    if head == "trigger":
        return lookup(parts, run.get("trigger") or {})
    if head == "run" and parts == ["reply"]:
        return run.get("reply")
    return None


def _typed(name: str) -> bool:
    """A contact's field: its value was read with its type, so it is written the locale's way."""
    return name.startswith("contact.") and name not in ("contact.phone", "contact.name")


def render(
    template: str, contact: Mapping[str, Any], run: RunDoc, regional: Regional | None = None
) -> tuple[str, list[str]]:
    """Text with placeholders filled; missing ones render empty and are returned as warnings.

    A format that does not exist or does not fit the value writes the value without it, with a
    warning that says why.
    """
    warnings: list[str] = []
    where = regional or _DEFAULT_REGIONAL

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = scope_value(name, contact, run)
        if value is None or value == "":
            warnings.append(f"placeholder {{{{{name}}}}} has no value; rendered empty")
            return ""
        fmt: Format | None = None
        if match.group(2) is not None:
            try:
                fmt = parse_format(match.group(2), match.group(3))
                return write_value(value, where, fmt, _typed(name))
            except FormatError as exc:
                warnings.append(f"placeholder {match.group(0)}: {exc}; written without the format")
        return write_value(value, where, None, _typed(name))

    return _PLACEHOLDER.sub(fill, template), warnings


def format_problems(text: str) -> list[str]:
    """What is wrong with the formats named in ``text``'s placeholders (for validation)."""
    problems = []
    for match in _PLACEHOLDER.finditer(text):
        if match.group(2) is not None:
            try:
                parse_format(match.group(2), match.group(3))
            except FormatError as exc:
                problems.append(f"{match.group(0)}: {exc}")
    return problems
