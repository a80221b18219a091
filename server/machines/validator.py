"""Static checks of a flow definition; ERRORs block publishing, WARNINGs are advice.

``validate(flow)`` checks the document on its own (graph, messages, delays, loops, the 24-hour
window); ``validate(flow, catalog)`` also checks every name the flow uses against what the
workspace has (templates, fields, tags, agents, teams, flows, the flows other flows connect to
without waiting) and delays against the moment of validation. Graph walks are linear in the
number of nodes and edges, so flows with hundreds of nodes validate quickly.
"""

from __future__ import annotations

from server.machines.catalog import Catalog
from server.machines.definition import FlowDefinition, Node
from server.machines.flow_checks.graph import connect_loops, reachable_from, spin_loops
from server.machines.flow_checks.issues import FlowIssue, error, warning
from server.machines.flow_checks.names import check_catalog
from server.machines.flow_checks.nodes import (
    check_node,
    check_placeholder_formats,
    check_targets,
    delays_in_the_past,
)
from server.machines.flow_checks.window import window_warnings


def validate(flow: FlowDefinition, catalog: Catalog | None = None) -> list[FlowIssue]:
    """Every problem of ``flow``; catalog checks run only when ``catalog`` is given."""
    issues: list[FlowIssue] = []
    by_id: dict[str, Node] = {}
    for node in flow.nodes:
        if node.id in by_id:
            issues.append(
                error(
                    node.id,
                    "DUPLICATE_NODE_ID",
                    f"two nodes are called {node.id!r}; rename one so node ids are unique",
                )
            )
        else:
            by_id[node.id] = node
    if not flow.nodes:
        issues.append(error(None, "EMPTY_FLOW", "the flow has no nodes: add at least one and set 'start'"))
        return issues
    if flow.start is None:
        issues.append(
            error(None, "MISSING_START", "the flow has no start: set 'start' to the id of its first node")
        )
    elif flow.start not in by_id:
        issues.append(
            error(
                None,
                "UNKNOWN_START",
                f"start points to {flow.start!r}, which is not a node of this flow; "
                f"set 'start' to one of its node ids",
            )
        )
    for node in flow.nodes:
        issues += check_targets(node, by_id)
        issues += check_node(node, flow)
        issues += check_placeholder_formats(node)
        if catalog is not None:
            issues += check_catalog(node, flow, catalog)
    issues += spin_loops(flow, by_id)
    issues += connect_loops(flow, by_id, catalog)
    if catalog is not None and catalog.now is not None:
        issues += delays_in_the_past(flow, catalog.now, catalog.timezone or "UTC")
    if flow.start in by_id:
        reachable = reachable_from(flow.start, by_id)
        for node in flow.nodes:
            if node.id not in reachable:
                issues.append(
                    warning(
                        node.id,
                        "UNREACHABLE_NODE",
                        f"node {node.id!r} cannot be reached from the start; "
                        f"point a 'next' or a branch to it, or delete it",
                    )
                )
        webhook = catalog is not None and catalog.starts_from_webhook
        issues += window_warnings(flow.start, by_id, webhook)
    return issues
