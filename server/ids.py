"""Identifier helpers: sortable unique ids and the contact key that routes events to actors."""

from __future__ import annotations

import os
import time
from typing import NamedTuple


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
    """A contact is identified by workspace + E.164 phone; this is also the actor address."""

    workspace_id: str
    phone: str

    @property
    def doc_id(self) -> str:
        return f"{self.workspace_id}:{self.phone}"

    @classmethod
    def from_doc_id(cls, doc_id: str) -> ContactKey:
        workspace_id, _, phone = doc_id.partition(":")
        return cls(workspace_id, phone)
