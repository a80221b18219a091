"""Compile a flow version into one shared ``transitions`` machine used as a pure step function.

States are node ids (plus ``END``); triggers are the events that move a run: ``advance``,
``reply``, ``other``, ``button__<id>``, ``no_reply``, ``failed``, ``timer``, ``branch__<n>``
(condition and split branches), ``otherwise``, ``invalid``, ``location`` (a location request
answered) and ``answered`` (a WhatsApp Flow's form answered and saved).
One machine per published version is shared by every run of that version: a run is only its
node id, so stepping is ``set_state(node)`` + ``trigger`` + read the state (see DESIGN.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from transitions import Machine, MachineError

from server.machines.definition import (
    ConditionNode,
    ConnectFlowNode,
    DelayNode,
    FlowDefinition,
    MessageNode,
    Node,
    SetVariableNode,
    SplitNode,
    TemplateNode,
    WhatsAppFlowNode,
)

END = "__end__"
_PLAIN_LABEL = re.compile(r"[\w .:-]+")


def button_trigger(button_id: str) -> str:
    return f"button__{button_id}"


def branch_trigger(index: int) -> str:
    return f"branch__{index}"


class _Cursor:
    """The only model of a shared machine: points at one run's node for one step."""

    state: str


@dataclass
class CompiledFlow:
    definition: FlowDefinition
    machine: Machine
    nodes: dict[str, Node] = field(default_factory=dict)
    _cursor: _Cursor = field(default_factory=_Cursor)

    def __post_init__(self) -> None:
        self.machine.add_model(self._cursor, initial=self.definition.start or END)

    def step(self, node_id: str, trigger: str) -> str | None:
        """The state ``trigger`` leads to from ``node_id``, or None when it does not apply there.

        Synchronous and without awaits, so the shared cursor is never seen half-moved.
        """
        self.machine.set_state(node_id, model=self._cursor)
        try:
            moved = self._cursor.trigger(trigger)  # type: ignore[attr-defined]
        except (MachineError, AttributeError):
            return None
        return self._cursor.state if moved else None


def node_edges(node: Node) -> list[tuple[str, str | None]]:
    if isinstance(node, WhatsAppFlowNode):
        return _whatsapp_flow_edges(node)
    if isinstance(node, MessageNode | TemplateNode):
        buttons = node.choices if isinstance(node, MessageNode) else node.buttons
        edges: list[tuple[str, str | None]] = [(button_trigger(b.id), b.next) for b in buttons]
        if isinstance(node, MessageNode) and node.location_request is not None:
            edges.append(("location", node.location_request.next))
        if node.on_reply is not None:
            edges.append(("reply", node.on_reply))
        if node.on_other is not None:
            edges.append(("other", node.on_other))
        if node.no_reply is not None:
            edges.append(("no_reply", node.no_reply.next))
        edges.append(("failed", node.on_failure))
        edges.append(("advance", node.next))
        return edges
    if isinstance(node, ConditionNode):
        edges = [(branch_trigger(i), b.next) for i, b in enumerate(node.branches)]
        edges.append(("otherwise", node.otherwise))
        return edges
    if isinstance(node, SplitNode):  # A/B split: branch__<n> like a condition, no "otherwise"
        return [(branch_trigger(i), b.next) for i, b in enumerate(node.branches)]
    if isinstance(node, DelayNode):
        return [("timer", node.next)]
    if isinstance(node, ConnectFlowNode):
        return [("connect", None)]
    if isinstance(node, SetVariableNode) and node.on_invalid is not None:
        return [("advance", node.next), ("invalid", node.on_invalid)]
    return [("advance", node.next)]


def _whatsapp_flow_edges(node: WhatsAppFlowNode) -> list[tuple[str, str | None]]:
    """A form's answer saved (``answered``), typed text, silence, a failed send, a bad answer."""
    edges: list[tuple[str, str | None]] = [("answered", node.next)]
    if node.on_other is not None:
        edges.append(("other", node.on_other))
    if node.no_reply is not None:
        edges.append(("no_reply", node.no_reply.next))
    edges.append(("failed", node.on_failure))
    if node.on_invalid is not None:
        edges.append(("invalid", node.on_invalid))
    return edges


def compile_flow(definition: FlowDefinition) -> CompiledFlow:
    """Build the machine; the definition must already have passed validation."""
    states = [n.id for n in definition.nodes] + [END]
    transitions = [
        {"trigger": trigger, "source": node.id, "dest": target or END}
        for node in definition.nodes
        for trigger, target in node_edges(node)
    ]
    machine = Machine(
        model=None,
        states=states,
        transitions=transitions,
        initial=definition.start or END,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    return CompiledFlow(definition, machine, {n.id: n for n in definition.nodes})


def mermaid(compiled: CompiledFlow, template_buttons: dict[tuple[str, str], list[str]] | None = None) -> str:
    """Mermaid ``flowchart`` text of the flow's graph, its edges labelled as a person reads them.

    A button's edge shows its title (a template node's untitled button, the template's quick
    reply at its position, from ``template_buttons``: (name, language) -> titles), a branch's
    its name, a ``connect_flow`` node points at the flow it starts; a plain ``next`` has no label.
    """
    lines = ["flowchart TD"]
    definition = compiled.definition
    names = {state: f"n{index}" for index, state in enumerate(compiled.machine.states)}
    lines.append("  start((start))")
    for node in definition.nodes:
        label = f"{node.id}<br/><i>{node.type}</i>".replace('"', "'")
        lines.append(f'  {names[node.id]}["{label}"]')
    lines.append(f"  {names[END]}((end))")
    if definition.start in names:
        lines.append(f"  start --> {names[definition.start]}")
    flows: dict[str, str] = {}
    for node in definition.nodes:
        source = names[node.id]
        if isinstance(node, ConnectFlowNode):
            if node.flow not in flows:
                flows[node.flow] = f"f{len(flows)}"
                lines.append(f'  {flows[node.flow]}[["{_escape(node.flow)}"]]')
            lines.append(f"  {source} -->|{_label(node.flow)}| {flows[node.flow]}")
            continue
        for trigger, target in node_edges(node):
            if trigger == "failed" and target is None:
                continue  # no on_failure: a failed send ends the run, drawn by no edge
            edge = edge_label(node, trigger, template_buttons or {})
            arrow = f"-->|{_label(edge)}|" if edge else "-->"
            lines.append(f"  {source} {arrow} {names[target or END]}")
    return "\n".join(lines) + "\n"


def edge_label(node: Node, trigger: str, template_buttons: dict[tuple[str, str], list[str]]) -> str | None:
    """How a person reads the edge ``trigger`` of ``node`` (None: a plain next)."""
    if trigger == "advance":
        return None
    if trigger.startswith("button__") and isinstance(node, MessageNode | TemplateNode):
        offered = (
            template_buttons.get((node.template, node.language), []) if isinstance(node, TemplateNode) else []
        )
        for index, button in enumerate(node.buttons):
            if button_trigger(button.id) == trigger:
                return button.title or (offered[index] if index < len(offered) else None) or button.id
    if trigger.startswith("branch__") and isinstance(node, ConditionNode):
        index = int(trigger.removeprefix("branch__"))
        if index < len(node.branches):
            return node.branches[index].name
    if trigger.startswith("branch__") and isinstance(node, SplitNode):
        index = int(trigger.removeprefix("branch__"))
        total = sum(max(b.weight, 0.0) for b in node.branches) or 1.0
        if index < len(node.branches):
            branch = node.branches[index]
            return f"{branch.name} {100 * max(branch.weight, 0.0) / total:.3g}%"  # "A 70%"
    if trigger == "no_reply" and isinstance(node, MessageNode | TemplateNode) and node.no_reply is not None:
        return f"no reply in {node.no_reply.after}"
    if trigger == "timer" and isinstance(node, DelayNode):
        return f"after {node.for_}" if node.for_ is not None else f"at {node.until}"
    return {"failed": "send failed", "invalid": "invalid value"}.get(trigger, trigger)


def _label(text: str) -> str:
    """An edge label: as is when plain words, else quoted (Mermaid reads anything in quotes)."""
    return text if _PLAIN_LABEL.fullmatch(text) else f'"{_escape(text)}"'


def _escape(text: str) -> str:
    """Text inside a quoted Mermaid label: no quotes, angle brackets or line breaks of its own."""
    return text.replace("\n", " ").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
