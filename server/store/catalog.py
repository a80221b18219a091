"""The workspace catalog flows refer to by name: tags, typed fields, agents and WhatsApp templates.

Each collection is unique per workspace on its natural key (see ``INDEXES``); ``insert``
returns False instead of raising when that key is taken, so operations can answer CONFLICT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from server.store.database import Database

Document = dict[str, Any]


class _Scoped:
    """Shared by-id and list access, always filtered by workspace (nothing crosses workspaces)."""

    collection_name = ""
    order: tuple[str, ...] = ("name",)

    def __init__(self, database: Database) -> None:
        self._docs: AsyncCollection[Document] = database.collection(self.collection_name)

    async def insert(self, document: Document) -> bool:
        """Store a new entry; False when its natural key already exists in the workspace."""
        try:
            await self._docs.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, workspace_id: str, doc_id: str) -> Document | None:
        return await self._docs.find_one({"_id": doc_id, "workspace_id": workspace_id})

    async def get_many(self, workspace_id: str, doc_ids: list[str]) -> list[Document]:
        """The entries of these ids (missing ones left out), in one round trip: API DataLoaders."""
        return await self._docs.find({"_id": {"$in": doc_ids}, "workspace_id": workspace_id}).to_list()

    async def list(self, workspace_id: str) -> list[Document]:
        return (
            await self._docs.find({"workspace_id": workspace_id})
            .sort([(key, 1) for key in self.order])
            .to_list()
        )

    async def update(self, workspace_id: str, doc_id: str, changes: Document) -> Document | None:
        """Apply ``changes``; raises ``DuplicateKeyError`` when they collide with another entry."""
        return await self._docs.find_one_and_update(
            {"_id": doc_id, "workspace_id": workspace_id},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )

    async def delete(self, workspace_id: str, doc_id: str) -> bool:
        result = await self._docs.delete_one({"_id": doc_id, "workspace_id": workspace_id})
        return result.deleted_count == 1


class TagRepository(_Scoped):
    """``{_id, workspace_id, name, kind: MARKETING|SUPPORT, created_at}``."""

    collection_name = "tags"

    async def get_by_name(self, workspace_id: str, name: str) -> Document | None:
        return await self._docs.find_one({"workspace_id": workspace_id, "name": name})


class FieldRepository(_Scoped):
    """``{_id, workspace_id, name, type, options, external: {system, property} | None}``."""

    collection_name = "fields"

    async def get_by_name(self, workspace_id: str, name: str) -> Document | None:
        return await self._docs.find_one({"workspace_id": workspace_id, "name": name})


class AgentRepository(_Scoped):
    """``{_id, workspace_id, email, name, available, teams}``; email is stored lower-case."""

    collection_name = "agents"
    order = ("email",)

    async def get_by_email(self, workspace_id: str, email: str) -> Document | None:
        return await self._docs.find_one({"workspace_id": workspace_id, "email": email})

    async def find(self, workspace_id: str, id_or_email: str) -> Document | None:
        """An agent by id or by email: flows may name either in an ``assign`` node."""
        return await self._docs.find_one(
            {"workspace_id": workspace_id, "$or": [{"_id": id_or_email}, {"email": id_or_email.lower()}]}
        )


class TemplateRepository(_Scoped):
    """Meta message templates, one document per (name, language).

    Sends and turns read templates through a short cache per process (``WorkspaceCaches``):
    every write here tells the ``on_change`` listeners the workspace whose templates changed, so
    an edit, Meta's verdict or a pause mirrored by the channel is seen at once in this process,
    whichever code path made it.
    """

    collection_name = "templates"
    order = ("name", "language")

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(workspace_id)`` after every write to that workspace's templates."""
        self._listeners.append(listener)

    def _changed(self, workspace_id: str) -> None:
        for listener in self._listeners:
            listener(workspace_id)

    async def insert(self, document: Document) -> bool:
        try:
            return await super().insert(document)
        finally:
            self._changed(document["workspace_id"])

    async def update(self, workspace_id: str, doc_id: str, changes: Document) -> Document | None:
        try:
            return await super().update(workspace_id, doc_id, changes)
        finally:
            self._changed(workspace_id)

    async def delete(self, workspace_id: str, doc_id: str) -> bool:
        try:
            return await super().delete(workspace_id, doc_id)
        finally:
            self._changed(workspace_id)

    async def get_by_name(self, workspace_id: str, name: str, language: str | None = None) -> list[Document]:
        """Every language of template ``name`` (or just ``language``)."""
        query: Document = {"workspace_id": workspace_id, "name": name}
        if language is not None:
            query["language"] = language
        return await self._docs.find(query).sort("language", 1).to_list()

    async def by_meta_id(self, workspace_id: str, meta_id: str) -> Document | None:
        """The template Meta knows as ``meta_id`` (its id from submission or sync)."""
        return await self._docs.find_one({"workspace_id": workspace_id, "meta_id": meta_id})


class AgentTeams:
    """Team membership, stored on the agents (``teams`` holds team names)."""

    def __init__(self, database: Database) -> None:
        self._agents: AsyncCollection[Document] = database.collection("agents")

    async def members(self, workspace_id: str, team: str) -> list[Document]:
        return (
            await self._agents.find({"workspace_id": workspace_id, "teams": team}).sort("email", 1).to_list()
        )

    async def set_members(self, workspace_id: str, team: str, agent_ids: list[str]) -> None:
        await self._agents.update_many(
            {"workspace_id": workspace_id, "teams": team, "_id": {"$nin": agent_ids}},
            {"$pull": {"teams": team}},
        )
        await self._agents.update_many(
            {"workspace_id": workspace_id, "_id": {"$in": agent_ids}}, {"$addToSet": {"teams": team}}
        )

    async def rename(self, workspace_id: str, old: str, new: str) -> None:
        await self._agents.update_many(
            {"workspace_id": workspace_id, "teams": old}, {"$set": {"teams.$": new}}
        )

    async def remove(self, workspace_id: str, team: str) -> None:
        await self._agents.update_many(
            {"workspace_id": workspace_id, "teams": team}, {"$pull": {"teams": team}}
        )
