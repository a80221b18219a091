"""What a check finds: an ERROR blocks publishing, a WARNING is advice; both name the node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["ERROR", "WARNING"]


@dataclass(frozen=True)
class FlowIssue:
    """One problem of a flow; ``node_id`` is None for the document as a whole (no start, no nodes)."""

    node_id: str | None
    severity: Severity
    code: str
    message: str


def error(node_id: str | None, code: str, message: str) -> FlowIssue:
    """Blocks publishing."""
    return FlowIssue(node_id, "ERROR", code, message)


def warning(node_id: str | None, code: str, message: str) -> FlowIssue:
    """Advice: the flow publishes as it is."""
    return FlowIssue(node_id, "WARNING", code, message)
