"""Simple messages a run may reach while the 24-hour window is closed (after a webhook start or a
wait longer than the window, with no template before them).
"""

from __future__ import annotations

from collections import deque

from server.durations import parse_duration
from server.machines.definition import (
    AnsweredNode,
    DelayNode,
    Node,
    SimpleMessageNode,
    TemplateNode,
    WhatsAppFlowNode,
)
from server.machines.flow_checks.edges import runtime_edges
from server.machines.flow_checks.issues import FlowIssue, warning
from server.window import WINDOW

# Bits of the window state carried along graph walks: why a simple message may find it closed.
_AFTER_WEBHOOK = 1
_AFTER_LONG_WAIT = 2


def _long_wait_after(node: Node, kind: str) -> bool:
    """Whether leaving ``node`` along ``kind`` comes after a wait longer than the 24-hour window."""
    if isinstance(node, DelayNode):
        return node.until is not None or (node.for_ is not None and parse_duration(node.for_) > WINDOW)
    if kind == "no_reply" and isinstance(node, AnsweredNode) and node.no_reply:
        return parse_duration(node.no_reply.after) > WINDOW
    return False


def window_warnings(start: str, by_id: dict[str, Node], webhook: bool) -> list[FlowIssue]:
    """Simple messages that may be due while the 24-hour window is closed.

    BFS over (node, why-closed bits): a template clears the bits (it opens the conversation), a
    reply or button press clears them (the customer wrote), a long wait sets one. At most four
    states per node, so the walk stays linear.
    """
    first = (start, _AFTER_WEBHOOK if webhook else 0)
    seen = {first}
    queue = deque([first])
    warned: dict[str, int] = {}
    while queue:
        node_id, bits = queue.popleft()
        node = by_id[node_id]
        if isinstance(node, SimpleMessageNode) and bits:
            warned[node_id] = warned.get(node_id, 0) | bits
        base = 0 if isinstance(node, TemplateNode) else bits
        for kind, target in runtime_edges(node):
            if target not in by_id:
                continue
            answered = kind in ("button", "reply", "other", "location", "answered") or (
                kind == "invalid" and isinstance(node, WhatsAppFlowNode)  # the customer sent the form
            )
            after = 0 if answered else base
            if _long_wait_after(node, kind):
                after |= _AFTER_LONG_WAIT
            state = (target, after)
            if state not in seen:
                seen.add(state)
                queue.append(state)
    issues: list[FlowIssue] = []
    for node_id in (n for n in by_id if n in warned):
        if warned[node_id] & _AFTER_LONG_WAIT:
            issues.append(
                warning(
                    node_id,
                    "SIMPLE_MESSAGE_AFTER_LONG_WAIT",
                    f"message {node_id!r} can be reached after a wait longer than 24 h "
                    f"with no template before it; the conversation window may be closed "
                    f"and it would not be sent: put a template node before it",
                )
            )
        if warned[node_id] & _AFTER_WEBHOOK:
            issues.append(
                warning(
                    node_id,
                    "SIMPLE_MESSAGE_AFTER_WEBHOOK_START",
                    f"message {node_id!r} can be reached from the webhook start with no "
                    f"template before it; the conversation may not be open and it would "
                    f"not be sent: start with a template node",
                )
            )
    return issues
