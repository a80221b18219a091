"""Batched store reads for one GraphQL operation, so a nested query costs one round trip per level.

``contact { runs { contact { runs { contact ... }}}}`` used to read the contact once per run
at every level (8,420 reads for a contact with 20 runs, three levels down). Resolvers of object
fields that point at another stored document load it through ``loaders(info)``: every load of
one level is sent as one ``$in`` query, and an id already read in this operation is not read
again.

The loaders live for one operation, not one context: a WebSocket's context lasts as long as
the connection and runs many operations at once. ``BatchLoads`` (a schema extension, one per
operation) sets them in a context variable that the operation's resolvers see, and renews them
after each subscription event, so every event shows the documents as they are then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension
from strawberry.types import StreamExecutionResult

from server.graphql.context import TenantInfo
from server.services import Services

Document = dict[str, Any]
Key = tuple[str, str]  # (workspace id, document id): nothing is read across workspaces
GetMany = Callable[[str, list[str]], Awaitable[list[Document]]]


def _batched(get_many: GetMany) -> Callable[[list[Key]], Awaitable[list[Document | None]]]:
    async def load(keys: list[Key]) -> list[Document | None]:
        by_workspace: dict[str, list[str]] = {}
        for workspace_id, doc_id in keys:
            ids = by_workspace.setdefault(workspace_id, [])
            if doc_id not in ids:
                ids.append(doc_id)
        found: dict[Key, Document] = {}
        for workspace_id, ids in by_workspace.items():
            for document in await get_many(workspace_id, ids):
                found[(workspace_id, document["_id"])] = document
        return [found.get(key) for key in keys]

    return load


def _by_provider_id(services: Services) -> Callable[[list[Key]], Awaitable[list[Document | None]]]:
    """Messages by (workspace, provider id): what quotes and reactions name."""

    async def load(keys: list[Key]) -> list[Document | None]:
        by_workspace: dict[str, list[str]] = {}
        for workspace_id, provider_id in keys:
            ids = by_workspace.setdefault(workspace_id, [])
            if provider_id not in ids:
                ids.append(provider_id)
        found: dict[Key, Document] = {}
        for workspace_id, ids in by_workspace.items():
            for provider_id, document in (await services.messages.by_provider_ids(workspace_id, ids)).items():
                found[(workspace_id, provider_id)] = document
        return [found.get(key) for key in keys]

    return load


class Loaders:
    """One operation's loaders: contacts, agents, flows and messages by (workspace, id); messages
    also by (workspace, provider id), for quotes and reactions."""

    def __init__(self, services: Services) -> None:
        self.contacts: DataLoader[Key, Document | None] = DataLoader(_batched(services.contacts.get_many))
        self.agents: DataLoader[Key, Document | None] = DataLoader(_batched(services.agents.get_many))
        self.flows: DataLoader[Key, Document | None] = DataLoader(_batched(services.flows.get_many))
        self.messages: DataLoader[Key, Document | None] = DataLoader(_batched(services.messages.get_many))
        self.messages_by_provider_id: DataLoader[Key, Document | None] = DataLoader(_by_provider_id(services))


_current: ContextVar[Loaders | None] = ContextVar("konvo_graphql_loaders", default=None)


def loaders(info: TenantInfo) -> Loaders:
    """The running operation's loaders (fresh ones, batching nothing, outside ``BatchLoads``)."""
    return _current.get() or Loaders(info.context.services)


class BatchLoads(SchemaExtension):
    """Gives each operation its own loaders, renewed after every result it streams."""

    def on_operation(self) -> Iterator[None]:
        _current.set(self._fresh())
        try:
            yield
        finally:
            # Not ``reset(token)``: a subscription's stream may be closed from another context.
            _current.set(None)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        yield
        _current.set(self._fresh())  # the next subscription event reads the store anew

    def _fresh(self) -> Loaders | None:
        services = getattr(self.execution_context.context, "services", None)
        return Loaders(services) if services is not None else None
