"""Static checks of a flow definition; ERRORs block publishing, WARNINGs are advice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.machines.definition import (
    ConditionNode,
    FlowDefinition,
    MessageNode,
    Node,
    TemplateNode,
)

Severity = Literal["ERROR", "WARNING"]
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20


@dataclass(frozen=True)
class FlowIssue:
    node_id: str | None
    severity: Severity
    code: str
    message: str


def successors(node: Node) -> list[str | None]:
    """Every node id this node can lead to (``None`` ends the run)."""
    targets: list[str | None] = []
    if isinstance(node, MessageNode | TemplateNode):
        targets += [b.next for b in node.buttons]
        if node.on_reply is not None:
            targets.append(node.on_reply)
        if node.no_reply is not None:
            targets.append(node.no_reply.next)
        if node.on_failure is not None:
            targets.append(node.on_failure)
    if isinstance(node, ConditionNode):
        targets += [b.next for b in node.branches]
        targets.append(node.otherwise)
    else:
        targets.append(node.next)
    return targets


def validate(flow: FlowDefinition) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    ids = [n.id for n in flow.nodes]
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            issues.append(FlowIssue(node_id, "ERROR", "DUPLICATE_NODE_ID",
                                    f"two nodes are called {node_id!r}; node ids must be unique"))
        seen.add(node_id)
    if not flow.nodes:
        issues.append(FlowIssue(None, "ERROR", "EMPTY_FLOW", "the flow has no nodes"))
        return issues
    if flow.start is None:
        issues.append(FlowIssue(None, "ERROR", "MISSING_START",
                                "the flow has no start: set 'start' to the id of its first node"))
    elif flow.start not in seen:
        issues.append(FlowIssue(None, "ERROR", "UNKNOWN_START",
                                f"start points to {flow.start!r}, which is not a node of this flow"))
    for node in flow.nodes:
        for target in successors(node):
            if target is not None and target not in seen:
                issues.append(FlowIssue(node.id, "ERROR", "UNKNOWN_NEXT",
                                        f"node {node.id!r} leads to {target!r}, which does not exist"))
        if isinstance(node, MessageNode):
            if node.text is None and node.media is None:
                issues.append(FlowIssue(node.id, "ERROR", "EMPTY_MESSAGE",
                                        f"message {node.id!r} needs a text or a media"))
            if len(node.buttons) > MAX_REPLY_BUTTONS:
                issues.append(FlowIssue(node.id, "ERROR", "TOO_MANY_BUTTONS",
                                        f"message {node.id!r} has {len(node.buttons)} buttons; "
                                        f"WhatsApp allows at most {MAX_REPLY_BUTTONS}"))
            for button in node.buttons:
                title = button.title or ""
                if not title:
                    issues.append(FlowIssue(node.id, "ERROR", "BUTTON_TITLE_MISSING",
                                            f"button {button.id!r} of {node.id!r} needs a title"))
                elif len(title) > MAX_BUTTON_TITLE:
                    issues.append(FlowIssue(node.id, "ERROR", "BUTTON_TITLE_TOO_LONG",
                                            f"button {button.id!r} of {node.id!r} has a title of "
                                            f"{len(title)} characters; the limit is "
                                            f"{MAX_BUTTON_TITLE}"))
    if flow.start in seen:
        reachable = _reachable(flow)
        for node in flow.nodes:
            if node.id not in reachable:
                issues.append(FlowIssue(node.id, "WARNING", "UNREACHABLE_NODE",
                                        f"node {node.id!r} cannot be reached from the start"))
    return issues


def _reachable(flow: FlowDefinition) -> set[str]:
    by_id = {n.id: n for n in flow.nodes}
    stack = [flow.start]
    found: set[str] = set()
    while stack:
        current = stack.pop()
        if current is None or current in found or current not in by_id:
            continue
        found.add(current)
        stack.extend(successors(by_id[current]))
    return found
