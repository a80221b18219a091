"""Compile a flow version into one shared ``transitions`` machine used as a pure step function.

States are node ids (plus ``END``); triggers are the events that move a run: ``advance``,
``reply``, ``other``, ``button__<id>``, ``no_reply``, ``failed``, ``timer``, ``branch__<n>``,
``otherwise``, ``invalid``, ``location`` (a location request answered) and ``answered`` (a
WhatsApp Flow's form answered and saved).
One machine per published version is shared by every run of that version: a run is only its
node id, so stepping is ``set_state(node)`` + ``trigger`` + read the state (see DESIGN.md).
"""

from __future__ import annotations

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
    TemplateNode,
    WhatsAppFlowNode,
)

END = "__end__"


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


def mermaid(compiled: CompiledFlow) -> str:
    """Mermaid ``flowchart`` text of the compiled machine's states and transitions."""
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
    for event in compiled.machine.events.values():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                if event.name == "failed" and transition.dest == END:
                    continue
                lines.append(f"  {names[source]} -->|{event.name}| {names[transition.dest]}")
    return "\n".join(lines) + "\n"
