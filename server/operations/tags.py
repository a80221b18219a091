"""Workspace tags (MARKETING or SUPPORT): created, renamed and deleted by name, since flows and
segments name them; a tag a flow still uses cannot be deleted, and a rename retags contacts.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from server.actors.contact_actor import event_id
from server.actors.events import TagContact
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import ContactKey, new_id
from server.machines.flow_walk import definition_segments, raw_nodes, segment_names
from server.operations.flow_versions import FlowVersionServices, flows_using
from server.store.catalog import TagRepository
from server.text_input import (
    MAX_TAG_NAME,
    checked_name,
)

TAG_KINDS = ("MARKETING", "SUPPORT")
RETAG_CONCURRENCY = 16


class TagServices(FlowVersionServices, Protocol):
    """What the tag use cases read and retag: tags, contacts and the flows that name them."""

    @property
    def tags(self) -> TagRepository: ...


def normalize_tag_name(name: object, field: str = "name") -> str:
    return checked_name(name, field=field, limit=MAX_TAG_NAME, what="a tag name")


def _tag_kind(kind: object) -> str:
    value = str(getattr(kind, "value", kind)).upper()
    if value not in TAG_KINDS:
        raise InvalidInput(f"tag kind must be one of {', '.join(TAG_KINDS)}", field="kind")
    return value


async def create_tag(services: TagServices, workspace_id: str, name: str, kind: object) -> dict[str, Any]:
    name = normalize_tag_name(name)
    document = {
        "_id": new_id("tag"),
        "workspace_id": workspace_id,
        "name": name,
        "kind": _tag_kind(kind),
        "created_at": services.clock.now(),
    }
    if not await services.tags.insert(document):
        raise Conflict(f"a tag called {name!r} already exists", field="name")
    return document


async def require_tag(services: TagServices, workspace_id: str, tag_id: str) -> dict[str, Any]:
    tag = await services.tags.get(workspace_id, tag_id)
    if tag is None:
        raise NotFound(f"tag {tag_id} not found")
    return tag


async def list_tags(services: TagServices, workspace_id: str) -> list[dict[str, Any]]:
    return await services.tags.list(workspace_id)


async def rename_tag(services: TagServices, workspace_id: str, tag_id: str, name: str) -> dict[str, Any]:
    """Rename a tag no flow uses yet.

    Flows and contacts hold tag *names*, so renaming a tag a flow uses would silently break
    that flow's tag nodes and segments: the caller is told which flows to edit first.
    """
    tag = await require_tag(services, workspace_id, tag_id)
    name = normalize_tag_name(name)
    if name == tag["name"]:
        return tag
    await _refuse_if_used(services, workspace_id, tag["name"], "rename")
    try:
        updated = await services.tags.update(workspace_id, tag_id, {"name": name})
    except DuplicateKeyError:
        raise Conflict(f"a tag called {name!r} already exists", field="name") from None
    if updated is None:
        raise NotFound(f"tag {tag_id} not found")
    await retag_contacts(services, workspace_id, tag["name"], name)  # contacts keep their tag
    return updated


async def delete_tag(services: TagServices, workspace_id: str, tag_id: str) -> bool:
    """Delete a tag no flow uses, and take it off every contact.

    The rule: refused with CONFLICT, naming the flows, while the draft or the active version of
    any flow adds, removes or tests the tag (edit those flows first). Runs still finishing on
    an older version may add the name again; it then acts like a tag outside the catalog.
    """
    tag = await require_tag(services, workspace_id, tag_id)
    await _refuse_if_used(services, workspace_id, tag["name"], "delete")
    deleted = await services.tags.delete(workspace_id, tag_id)
    if deleted:
        await retag_contacts(services, workspace_id, tag["name"], None)
    return deleted


async def retag_contacts(services: TagServices, workspace_id: str, old: str, new: str | None) -> int:
    """Rename (or, with ``new`` None, remove) a tag on every contact that has it.

    Through each contact's actor, not a bulk update: an actor holding the contact in memory
    must see the change, and subscribers get it like any other.
    """
    actors = services.actors
    gate = asyncio.Semaphore(RETAG_CONCURRENCY)
    add = (new,) if new else ()

    async def retag(key: ContactKey) -> None:
        async with gate:
            await actors.ask(key, TagContact(event_id(), add=add, remove=(old,)))

    keys = await services.contacts.keys_with_tag(workspace_id, old)
    await asyncio.gather(*(retag(k) for k in keys))
    return len(keys)


async def flows_using_tag(services: TagServices, workspace_id: str, name: str) -> list[str]:
    """Names of the flows whose draft or active version adds, removes or tests tag ``name``."""
    return await flows_using(
        services, workspace_id, lambda definition: name in tags_in_definition(definition)
    )


async def _refuse_if_used(services: TagServices, workspace_id: str, name: str, action: str) -> None:
    using = await flows_using_tag(services, workspace_id, name)
    if using:
        listed = ", ".join(repr(n) for n in using)
        raise Conflict(
            f"cannot {action} tag {name!r}: used by flow(s) {listed}; remove it from them first",
            flows=using,
        )


def tags_in_definition(definition: Any) -> set[str]:
    """Tag names a raw flow document mentions (``tag`` nodes and ``{"tag": ..}`` segment leaves)."""
    found: set[str] = set()
    for node in raw_nodes(definition, "tag"):
        for key in ("add", "remove"):
            found.update(v for v in node.get(key) or [] if isinstance(v, str))
    for segment in definition_segments(definition):
        found.update(name for kind, name in segment_names(segment) if kind == "tag")
    return found
