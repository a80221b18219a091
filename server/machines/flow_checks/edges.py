"""The moves the checks walk: every node reference with the field that holds it, and the moves a
run can really make (the compiler's own edges).
"""

from __future__ import annotations

from server.machines.compiler import node_edges
from server.machines.definition import (
    AnsweredNode,
    ConditionNode,
    DelayNode,
    MessageNode,
    Node,
    SetVariableNode,
    SplitNode,
    TemplateNode,
    WhatsAppFlowNode,
)


def labelled_targets(node: Node) -> list[tuple[str, str | None]]:
    """Every reference to another node, with the field that holds it (for messages)."""
    targets: list[tuple[str, str | None]] = []
    if isinstance(node, WhatsAppFlowNode):
        return _whatsapp_flow_targets(node)
    if isinstance(node, MessageNode | TemplateNode):
        targets += [(f"buttons[{b.id!r}].next", b.next) for b in node.buttons]
        if isinstance(node, MessageNode):
            targets += _interactive_targets(node)
        if node.on_reply is not None:
            targets.append(("on_reply", node.on_reply))
        if node.on_other is not None:
            targets.append(("on_other", node.on_other))
        if node.no_reply is not None:
            targets.append(("no_reply.next", node.no_reply.next))
        if node.on_failure is not None:
            targets.append(("on_failure", node.on_failure))
    if isinstance(node, ConditionNode):
        targets += [(f"branches[{b.name!r}].next", b.next) for b in node.branches]
        targets.append(("otherwise", node.otherwise))
    elif isinstance(node, SplitNode):
        targets += [(f"branches[{b.name!r}].next", b.next) for b in node.branches]
    else:
        targets.append(("next", node.next))
    if isinstance(node, SetVariableNode) and node.on_invalid is not None:
        targets.append(("on_invalid", node.on_invalid))
    return targets


def successors(node: Node) -> list[str | None]:
    """Every node id this node can lead to (``None`` ends the run)."""
    return [target for _, target in labelled_targets(node)]


def runtime_edges(node: Node) -> list[tuple[str, str]]:
    """The (trigger, target) moves a run can really make from ``node``: the compiler's own edges.

    Button triggers are folded to ``button``; moves that end the run (target None) are dropped,
    so ``connect_flow`` (which leaves the run) has none.
    """
    return [
        ("button" if trigger.startswith("button__") else trigger, target)
        for trigger, target in node_edges(node)
        if target is not None
    ]


def waits(node: Node) -> bool:
    """A node that stops the run until time passes or the customer answers."""
    if isinstance(node, DelayNode):
        return True
    return isinstance(node, AnsweredNode) and node.waits


def _interactive_targets(node: MessageNode) -> list[tuple[str, str | None]]:
    targets: list[tuple[str, str | None]] = [
        (f"carousel[{i}].buttons[{b.id!r}].next", b.next)
        for i, card in enumerate(node.carousel)
        for b in card.buttons
    ]
    if node.location_request is not None:
        targets.append(("location_request.next", node.location_request.next))
    return targets


def _whatsapp_flow_targets(node: WhatsAppFlowNode) -> list[tuple[str, str | None]]:
    targets: list[tuple[str, str | None]] = [("next", node.next)]
    if node.on_other is not None:
        targets.append(("on_other", node.on_other))
    if node.no_reply is not None:
        targets.append(("no_reply.next", node.no_reply.next))
    if node.on_failure is not None:
        targets.append(("on_failure", node.on_failure))
    if node.on_invalid is not None:
        targets.append(("on_invalid", node.on_invalid))
    return targets
