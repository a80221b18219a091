"""Use cases name the services they use: a small protocol each, never the whole ``Services``.

Below the edges (``server/operations/``, ``server/triggers/``, the root's workers in
``server/contact_services.py`` and the dev seed), a function that needs services takes the
``Protocol`` of its use case, which lists as read-only properties only the members that use case
reads. ``Services`` (built once by ``server/runtime.py``) satisfies each structurally, and mypy
proves every function reads only what its protocol lists. These tests hold the shape: no wide
``Services`` in a signature, every ``services`` parameter a protocol, every member a real
``Services`` field the module reads, and protocols kept small.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from server.services import Services

ROOT = Path(__file__).resolve().parents[2]
BELOW_THE_EDGES = ("server/operations", "server/triggers", "server/contact_services.py", "server/dev/seed.py")

# A protocol's members, inherited ones included. Above this a use case touches so much that a
# reader should ask whether it is one use case; the few that are wider compose several use cases
# (recorded below with their size, so they can shrink but not grow unnoticed).
MAX_MEMBERS = 10
WIDER: dict[str, int] = {
    # validation (the whole catalog: 11) + template submission + version activation
    "server.operations.flows.PublishServices": 14,
    # the catalog it validates against, the compiled-flow cache, the agent picker
    "server.operations.simulation.SimulationServices": 13,
    # a snapshot of every name a flow may use: one repository per kind of name
    "server.operations.catalog.CatalogServices": 11,
    # messages, statuses, template news and identity changes of one webhook batch
    "server.operations.channel_inbound.InboundServices": 12,
    # freeze the audience, pace by the messaging limit, start each recipient's run
    "server.triggers.broadcast_runner.BroadcastRunnerServices": 14,
    # verify, map and store a webhook request, then apply it through the actor
    "server.triggers.webhooks.HookReceiveServices": 12,
    # workers the composition root starts: the broadcast runner and webhook recovery
    "server.triggers.services.TriggerWorkerServices": 16,
    # workers the composition root starts: the Klaviyo sync and contact imports
    "server.contact_services.ContactWorkerServices": 16,
    # dev only: one of everything in the example catalog
    "server.dev.seed.SeedServices": 14,
}


def _module_names() -> Iterator[str]:
    for entry in BELOW_THE_EDGES:
        path = ROOT / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            parts = file.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: list[ModuleType] = [importlib.import_module(name) for name in _module_names()]


def _functions(module: ModuleType) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every function and method defined in ``module`` (not imported into it)."""
    for name, value in vars(module).items():
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            yield name, value
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            for attr, member in vars(value).items():
                if inspect.isfunction(member):
                    yield f"{name}.{attr}", member


def _protocols(module: ModuleType) -> Iterator[type]:
    for value in vars(module).values():
        if inspect.isclass(value) and value.__module__ == module.__name__ and _is_protocol(value):
            yield value


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def _members(protocol: type) -> set[str]:
    """The properties a protocol lists, its bases' included."""
    return {
        name
        for klass in protocol.__mro__
        if _is_protocol(klass) and klass is not typing.Protocol
        for name, value in vars(klass).items()
        if isinstance(value, property)
    }


def _own_protocols() -> list[type]:
    return [protocol for module in MODULES for protocol in _protocols(module)]


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_modules_are_found() -> None:
    names = {module.__name__ for module in MODULES}
    assert {"server.operations.tags", "server.triggers.webhooks", "server.contact_services"} <= names
    assert len(_own_protocols()) > 30


def test_no_use_case_takes_the_whole_services() -> None:
    """Read from the source's annotations, so a string annotation cannot hide it."""
    wide = []
    for module in MODULES:
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.annotation is not None:
                if ast.unparse(node.annotation).strip("'\"").split(".")[-1] == "Services":
                    wide.append(f"{module.__name__}: {node.arg} (line {node.lineno})")
            elif isinstance(node, ast.AnnAssign):
                if ast.unparse(node.annotation).strip("'\"").split(".")[-1] == "Services":
                    wide.append(f"{module.__name__}: {ast.unparse(node.target)} (line {node.lineno})")
    assert not wide, "take the use case's protocol, not the whole Services:\n" + "\n".join(wide)


def test_every_services_parameter_is_a_protocol() -> None:
    """The resolved annotation of each ``services`` parameter is a ``Protocol``: never ``Any``,
    never missing, never a concrete class."""
    wrong = []
    for module in MODULES:
        for name, function in _functions(module):
            if "services" not in inspect.signature(function).parameters:
                continue
            hint = typing.get_type_hints(function).get("services")
            if not (inspect.isclass(hint) and _is_protocol(hint)):
                wrong.append(f"{module.__name__}.{name}: services is {hint!r}")
    assert not wrong, "\n".join(wrong)


def test_every_protocol_member_is_a_services_field() -> None:
    """What a protocol lists is something the composition root provides, with the same type."""
    fields = {field.name: field.type for field in dataclasses.fields(Services)}
    hints = typing.get_type_hints(Services)
    wrong = []
    for protocol in _own_protocols():
        for klass in protocol.__mro__:
            if not _is_protocol(klass) or klass is typing.Protocol:
                continue
            for name, value in vars(klass).items():
                if not isinstance(value, property):
                    continue
                if name not in fields:
                    wrong.append(f"{_qualname(klass)}.{name}: not a Services field")
                    continue
                returns = typing.get_type_hints(value.fget).get("return")
                if returns != hints[name]:
                    wrong.append(f"{_qualname(klass)}.{name}: {returns!r}, Services has {hints[name]!r}")
    assert not wrong, "\n".join(wrong)


def test_every_protocol_member_is_read_by_its_module() -> None:
    """A protocol lists what its own module reads; a member nobody reads only widens it."""
    unread = []
    for module in MODULES:
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
        read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        for protocol in _protocols(module):
            own = {name for name, value in vars(protocol).items() if isinstance(value, property)}
            unread += [f"{_qualname(protocol)}.{name}" for name in sorted(own - read)]
    assert not unread, "listed but never read:\n" + "\n".join(unread)


def test_protocols_stay_small() -> None:
    sizes = {_qualname(protocol): len(_members(protocol)) for protocol in _own_protocols()}
    over = {name: size for name, size in sorted(sizes.items()) if size > WIDER.get(name, MAX_MEMBERS)}
    report = "\n".join(
        f"{name}: {size} members (limit {WIDER.get(name, MAX_MEMBERS)})" for name, size in over.items()
    )
    assert not over, "protocols over their limit:\n" + report
    stale = {name: size for name, size in WIDER.items() if sizes.get(name, 0) < size}
    assert not stale, f"narrower now, lower the recorded size in WIDER: {stale}"
