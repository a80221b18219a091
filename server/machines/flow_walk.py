"""The one walk over raw flow documents and segments, as stored (JSON), not as parsed models:
drafts that do not parse yet are walked too, so "which flows use this tag/team/agent" and the
validator's name checks see the same nodes and segment leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SEGMENT_NAMES = ("tag", "var", "assigned_to")


def raw_nodes(definition: object, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The nodes of a stored flow document (of one ``type`` when ``kind`` is given)."""
    if not isinstance(definition, dict):
        return
    for node in definition.get("nodes") or []:
        if isinstance(node, dict) and (kind is None or node.get("type") == kind):
            yield node


def segment_names(segment: object) -> Iterator[tuple[str, str]]:
    """The ``tag``, ``var`` and ``assigned_to`` names in a raw segment, through all/any/not, in
    document order."""
    stack = [segment]
    while stack:
        part = stack.pop()
        if isinstance(part, list):
            stack.extend(reversed(part))
            continue
        if not isinstance(part, dict):
            continue
        for key in ("all", "any"):
            if isinstance(part.get(key), list):
                stack.extend(reversed(part[key]))
        if "not" in part:
            inner = part["not"]
            stack.extend(reversed(inner) if isinstance(inner, list) else [inner])
        for key in SEGMENT_NAMES:
            if isinstance(part.get(key), str):
                yield key, part[key]


def definition_segments(definition: object) -> Iterator[object]:
    """Every segment a stored flow document holds (the branches of its ``condition`` nodes)."""
    for node in raw_nodes(definition, "condition"):
        for branch in node.get("branches") or []:
            if isinstance(branch, dict):
                yield branch.get("segment")
