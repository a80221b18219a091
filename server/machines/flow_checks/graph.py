"""Walks over the whole flow: what the start reaches, loops that repeat without waiting, and
``connect_flow`` chains through other flows that never wait. Linear in nodes and edges.
"""

from __future__ import annotations

from collections import deque

from server.machines.catalog import Catalog
from server.machines.definition import (
    ConnectFlowNode,
    FlowDefinition,
    Node,
)
from server.machines.flow_checks.edges import runtime_edges, waits
from server.machines.flow_checks.issues import FlowIssue, error, warning


def reachable_from(start: str, by_id: dict[str, Node]) -> set[str]:
    """The node ids a run can reach from ``start`` by the moves it can really make."""
    found = {start}
    stack = [start]
    while stack:
        for _, target in runtime_edges(by_id[stack.pop()]):
            if target in by_id and target not in found:
                found.add(target)
                stack.append(target)
    return found


def spin_loops(flow: FlowDefinition, by_id: dict[str, Node]) -> list[FlowIssue]:
    """One issue per strongly connected group of non-waiting nodes that can repeat forever."""
    graph: dict[str, list[str]] = {}
    for node_id, node in by_id.items():
        if waits(node):
            continue
        graph[node_id] = list(
            dict.fromkeys(t for _, t in runtime_edges(node) if t in by_id and not waits(by_id[t]))
        )
    order = {node.id: i for i, node in enumerate(flow.nodes) if node.id in graph}
    issues: list[FlowIssue] = []
    for component in _strongly_connected(graph):
        first = min(component, key=order.__getitem__)
        if len(component) == 1 and first not in graph[first]:
            continue
        cycle = _cycle_through(first, graph, set(component))
        path = " → ".join(repr(n) for n in [*cycle, first])
        others = sorted(set(component) - set(cycle), key=order.__getitem__)
        also = f" (also on this loop: {', '.join(repr(n) for n in others)})" if others else ""
        issues.append(
            error(
                first,
                "SPIN_LOOP",
                f"nodes {path} form a loop that repeats without waiting{also}; add a delay "
                f"or a message that waits for an answer (buttons, on_reply or no_reply) "
                f"on it, or break the loop",
            )
        )
    return issues


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (flows can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if position < len(children):
                work.append((node, position + 1))
                child = children[position]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_through(first: str, graph: dict[str, list[str]], component: set[str]) -> list[str]:
    """A shortest cycle from ``first`` back to itself inside its component (BFS)."""
    parent: dict[str, str] = {}
    queue = deque([first])
    while queue:
        current = queue.popleft()
        for target in graph[current]:
            if target == first:
                path = [current]
                while path[-1] != first:
                    path.append(parent[path[-1]])
                return list(reversed(path))
            if target in component and target not in parent:
                parent[target] = current
                queue.append(target)
    return [first]


# --- connections between flows -----------------------------------------------------------------


def instant_connections(flow: FlowDefinition) -> dict[str, str]:
    """The flows ``flow`` connects to before any wait: target name -> the connect_flow node id.

    Walks from the start through nodes that do not wait (as a run does in one turn); a message
    that waits or a delay stops the walk.
    """
    by_id = {n.id: n for n in flow.nodes}
    if flow.start not in by_id:
        return {}
    found: dict[str, str] = {}
    seen = {flow.start}
    queue = deque([flow.start])
    while queue:
        node = by_id[queue.popleft()]
        if waits(node):
            continue
        if isinstance(node, ConnectFlowNode):
            found.setdefault(node.flow, node.id)
        for _, target in runtime_edges(node):
            if target in by_id and target not in seen:
                seen.add(target)
                queue.append(target)
    return found


def connects_to_self(node: ConnectFlowNode, flow: FlowDefinition, catalog: Catalog | None) -> bool:
    own_id = catalog.flow_id if catalog is not None else None
    return node.flow == flow.name or (own_id is not None and node.flow == own_id)


def connect_loops(flow: FlowDefinition, by_id: dict[str, Node], catalog: Catalog | None) -> list[FlowIssue]:
    """``connect_flow`` cycles with no wait on the way (a contact would go round without end).

    This flow's connections before any wait come from its document; other flows' from the
    catalog (``connects``), so a loop through several flows is named from this flow's node.
    A self-connection after a wait is only advice (``CONNECT_TO_SELF``).
    """
    issues: list[FlowIssue] = []
    instant = set(instant_connections(flow).values())
    others: dict[str, frozenset[str]] = dict(catalog.connects) if catalog is not None else {}
    others.pop(flow.name, None)  # this flow's stored copy may be older than the document checked
    for node in flow.nodes:
        if not isinstance(node, ConnectFlowNode) or by_id.get(node.id) is not node:
            continue
        if connects_to_self(node, flow, catalog):
            cycle: list[str] | None = [flow.name, flow.name]
        else:
            back = _connection_path(node.flow, flow.name, others)
            cycle = [flow.name, *back] if back else None
        if cycle is None or node.id not in instant:
            if cycle is not None and len(cycle) == 2:
                issues.append(_connect_to_self(node))
            continue
        path = " → ".join(repr(name) for name in cycle)
        issues.append(
            error(
                node.id,
                "CONNECT_LOOP",
                f"connect_flow {node.id!r}: flows {path} connect to each other with no wait on the "
                f"way, so a contact would go round without end; add a message that waits for an "
                f"answer, or a delay, before one of these connections",
            )
        )
    return issues


def _connect_to_self(node: ConnectFlowNode) -> FlowIssue:
    return warning(
        node.id,
        "CONNECT_TO_SELF",
        f"connect_flow {node.id!r} restarts this same flow after a wait; that is allowed but "
        f"loops as long as the customer keeps going round — check that is what you want",
    )


def _connection_path(start: str, goal: str, connects: dict[str, frozenset[str]]) -> list[str] | None:
    """A shortest chain of instant connections from flow ``start`` to flow ``goal`` (BFS)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == goal:
            path = [current]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])  # type: ignore[arg-type]
            return list(reversed(path))
        for target in sorted(connects.get(current, ())):
            if target not in parent:
                parent[target] = current
                queue.append(target)
    return None
