"""Identifier helpers: sortable unique ids and the contact key that routes events to actors."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple


def new_id(prefix: str) -> str:
    """Time-ordered unique id (ms timestamp + 10 random bytes), readable by its prefix."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def scoped_id(workspace_id: str, provider_id: str) -> str:
    """A provider's id (a wamid) as one workspace knows it: the ``_id`` of what it names.

    A provider's id is not a secret and not ours to trust: a tenant can post any wamid to its own
    channel, so nothing stored under a provider id may be shared across workspaces (issue 15).
    """
    return f"{workspace_id}:{provider_id}"


class ContactKey(NamedTuple):
    """A contact's stable internal id, split in two: its workspace and its id within it.

    ``doc_id`` (``workspace:local_id``) is the contact document's ``_id`` and the actor address
    (the shard of a contact is a hash of it). It never changes, whatever becomes of the contact's
    phone number or BSUID (docs/identity.md):

    - contacts stored before identities keep the ``_id`` they had, whose ``local_id`` happens to be
      the phone number they were first seen with (``ws:+34600111222``): no rewrite, no re-shard;
    - contacts created since get an opaque ``local_id`` (``ct_...``, ``new_contact_key``).

    Read ``local_id`` as an opaque id, never as a phone: a contact's phone is its ``phone`` field,
    and finding a contact by a phone or a BSUID goes through ``server.contact_directory``.
    """

    workspace_id: str
    local_id: str

    @property
    def doc_id(self) -> str:
        return f"{self.workspace_id}:{self.local_id}"

    @classmethod
    def from_doc_id(cls, doc_id: str) -> ContactKey:
        workspace_id, _, local_id = doc_id.partition(":")
        return cls(workspace_id, local_id)

    @classmethod
    def of_contact(cls, contact: Mapping[str, Any]) -> ContactKey:
        """The key of a contact document."""
        return cls.from_doc_id(contact["_id"])

    @classmethod
    def referenced_by(cls, document: Mapping[str, Any]) -> ContactKey:
        """The contact a stored document belongs to (a message, a status report, a recipient...).

        Documents name their contact by ``contact_id``; those written before identities name it by
        ``phone`` only, which was then the contact's ``local_id`` (``workspace:phone``).
        """
        contact_id = document.get("contact_id")
        if contact_id:
            return cls.from_doc_id(str(contact_id))
        return cls(document["workspace_id"], document["phone"])

    @property
    def legacy(self) -> bool:
        """Stored before identities: the ``local_id`` is the phone the contact was first seen with."""
        return self.local_id.startswith("+")


def new_contact_key(workspace_id: str) -> ContactKey:
    """The key of a contact seen for the first time: an opaque id, not derived from an identity."""
    return ContactKey(workspace_id, new_id("ct"))
