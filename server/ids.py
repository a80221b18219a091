"""Identifier helpers: sortable unique ids and the contact key that routes events to actors."""

from __future__ import annotations

import os
import time
from typing import NamedTuple


def new_id(prefix: str) -> str:
    """Time-ordered unique id (ms timestamp + 10 random bytes), readable by its prefix."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


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
