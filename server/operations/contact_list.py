"""Listing a workspace's contacts: a segment and a search compiled into one store filter.

The segment goes through the same compiler as condition nodes and broadcasts
(``server.segments``), with ``$date`` values read in the workspace's time zone. The search is a
case-insensitive prefix of the name (or of a word of it), the username, the BSUID, or the phone
(digits, with or without ``+``). Order and paging are the store's (``ContactRepository.page``):
by contact id, which is creation order for contacts created since identities (docs/contacts.md).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from server.clock import Clock
from server.errors import InvalidInput
from server.segments import to_mongo_filter
from server.segments.language import regex_literal
from server.workspace_caches import WorkspaceCaches

MAX_SEARCH = 100
MAX_CONTACTS_PAGE = 200
_PHONE_LIKE = re.compile(r"\+?[\d\s\-().]+")


class ContactListServices(Protocol):
    """Compiling a contact filter: the workspace's caches and the clock."""

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def clock(self) -> Clock: ...


async def contact_filter(
    services: ContactListServices, workspace_id: str, segment: Any, search: str | None
) -> dict[str, Any]:
    """The store filter for ``segment`` and ``search`` ({} for every contact)."""
    parts: list[dict[str, Any]] = []
    if segment is not None:
        zone = await services.caches.timezone_of(workspace_id)
        parts.append(to_mongo_filter(segment, services.clock.now(), zone))
    if search is not None and search.strip():
        parts.append(search_filter(search))
    return {} if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def search_filter(search: str) -> dict[str, Any]:
    """Contacts whose name, username, BSUID or phone starts with ``search`` (any case)."""
    text = search.strip()
    if len(text) > MAX_SEARCH:
        raise InvalidInput(f"search: at most {MAX_SEARCH} characters", field="search")
    literal = regex_literal(text)
    handle = regex_literal(text.removeprefix("@"))
    options = [
        {"name": {"$regex": f"(^|\\s){literal}", "$options": "i"}},
        {"username": {"$regex": f"^@?{handle}", "$options": "i"}},
        {"bsuid": {"$regex": f"^{literal}", "$options": "i"}},
    ]
    if _PHONE_LIKE.fullmatch(text):
        digits = "".join(ch for ch in text if ch.isdigit())
        if digits:
            options.append({"phone": {"$regex": f"^\\x2b{digits}"}})
    return {"$or": options}
