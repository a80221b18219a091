"""``{{contact.x}}``, ``{{trigger.a.b}}`` and ``{{run.reply}}`` rendering with missing-value warnings."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][\w]*(?:\.[\w\-]+)*)\s*\}\}")


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


def scope_value(name: str, contact: dict[str, Any], run: dict[str, Any]) -> Any:
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


def render(template: str, contact: dict[str, Any], run: dict[str, Any]) -> tuple[str, list[str]]:
    """Text with placeholders filled; missing ones render empty and are returned as warnings."""
    warnings: list[str] = []

    def fill(match: re.Match[str]) -> str:
        value = scope_value(match.group(1), contact, run)
        if value is None or value == "":
            warnings.append(f"placeholder {{{{{match.group(1)}}}}} has no value; rendered empty")
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _PLACEHOLDER.sub(fill, template), warnings
