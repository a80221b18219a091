"""The layers of the server, held by its import graph (read with ``ast`` from ``server/**/*.py``).

Top to bottom, the way an event travels: the CLI and dev tools; the HTTP/WebSocket edges
(``server/web/``); the composition root; the GraphQL API; use cases (``operations``, ``triggers``)
and the ``Services`` whose members their protocols name; the actors; the pure machines; I/O (store, channels, pub/sub);
the ground floor every layer may use. Every import counts, also one inside a function or under
``TYPE_CHECKING``: a lazy import that closes a loop is still a loop.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"

# Longest prefix wins. A module not listed here fails ``test_every_module_has_a_layer``.
LAYERS: dict[str, int] = {
    # 9: entry points that drive a whole process
    "server.cli": 9,
    "server.cli_workspace": 9,
    "server.dev": 9,
    # 8: edges: everything that speaks HTTP or WebSocket
    "server.web": 8,
    # 7: the composition root and the workers it starts and stops
    "server.runtime": 7,
    "server.contact_services": 7,
    "server.triggers.services": 7,
    # 6: the GraphQL API (schema, types, resolvers, key checks)
    "server.graphql": 6,
    # 5: use cases and the services they take
    "server.operations": 5,
    "server.triggers": 5,
    "server.services": 5,
    "server.workspace_caches": 5,
    # 4: the actor system (one actor per contact, its commit and effects), and what feeds it
    "server.actors": 4,
    "server.contact_merge": 4,
    "server.integrations.klaviyo_sync": 4,
    # 3: pure decisions: flow machines, segments, the send policy
    "server.machines": 3,
    "server.segments": 3,
    "server.sending": 3,
    # 2: I/O: the store, channels, pub/sub, external clients, process-wide guards
    "server.store": 2,
    "server.channels": 2,
    "server.pubsub": 2,
    "server.integrations": 2,
    "server.egress": 2,
    "server.egress_transport": 2,
    "server.redis_keys": 1,
    "server.document_copy": 1,
    "server.documents": 1,
    "server.contact_directory": 2,
    "server.workspace_gate": 2,
    "server.workspace_inflight": 1,
    "server.workspace_redis": 2,
    "server.redis_clients": 2,
    "server.operator_client": 2,
    "server.secret_box": 2,
    "server.config": 2,  # settings name the egress allow-list
    # 1: the ground floor
    "server.cancellation": 1,
    "server.clock": 1,
    "server.errors": 1,
    "server.ids": 1,
    "server.expiring": 1,
    "server.packing": 1,
    "server.phones": 1,
    "server.identity": 1,
    "server.text_input": 1,
    "server.redaction": 1,
    "server.json_limits": 1,
    "server.window": 1,
    "server.durations": 1,
}

# Imports from a lower layer to a higher one that stay, each with why (at most two).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

# The event path of a WhatsApp message: webhook handler -> use case -> actor -> commit -> publish.
EVENT_PATH = [
    "server.web.whatsapp",
    "server.operations.channel_inbound",
    "server.actors.contact_actor",
    "server.store.contacts",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the server but its empty top package."""
    return {module_name(p): p for p in SERVER.rglob("*.py") if p != SERVER / "__init__.py"}


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    for found in ast.walk(node):
        if isinstance(found, ast.Import):
            names = [alias.name for alias in found.names]
        elif isinstance(found, ast.ImportFrom):
            base = found.module or ""
            if found.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (found.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from server.x import y``: y may be a module of package x
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in found.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("server") and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {}
    for module, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = set(_imported(tree, module, path.name == "__init__.py", known))
        graph[module].discard("server")  # the empty top package
    return graph


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer)
    return best[1] if best else None


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if (layer_of(source) or 0) < (layer_of(target) or 0)
    }


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_imports_run_down_the_layers() -> None:
    found = upward(import_graph())
    assert len(ALLOWED_UPWARD) <= 2
    assert sorted(found - set(ALLOWED_UPWARD)) == []
    assert sorted(set(ALLOWED_UPWARD) - found) == [], "an allowance that is no longer used goes"


def test_below_the_edges_nobody_imports_the_composition_root() -> None:
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "server.runtime" in targets)
    assert [m for m in importers if (layer_of(m) or 0) < LAYERS["server.web"]] == []


def test_the_event_path_goes_down() -> None:
    graph = import_graph()
    layers = [layer_of(m) for m in EVENT_PATH]
    assert layers == sorted(layers, key=lambda x: -(x or 0)) and len(set(layers)) == len(layers)
    for upper, lower in itertools.pairwise(EVENT_PATH):
        assert _reaches(graph, upper, lower), f"{upper} no longer leads to {lower}"
    # the commit publishes the contact's news to subscribers (pub/sub below the actors)
    assert (
        _reaches(graph, "server.actors.effects", "server.pubsub")
        or "server.pubsub" in graph["server.runtime"]
    )


def _reaches(graph: dict[str, set[str]], source: str, target: str) -> bool:
    seen, todo = {source}, [source]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_the_graph_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    """The reader counts an import inside a function and one under TYPE_CHECKING."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from server.runtime import Runtime\n"
        "def f():\n    from server.web import app\n"
    )
    tree = ast.parse(source)
    known = {"server.runtime", "server.web", "server.web.app"}
    assert set(_imported(tree, "server.x", False, known)) == {"server.runtime", "server.web.app"}
