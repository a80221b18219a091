"""Find the contact a test's customer became: contacts are keyed by a stable id, not by their phone."""

from __future__ import annotations

from typing import Any

from server.identity import Identities
from server.ids import ContactKey
from server.runtime import Runtime


async def key_of(
    runtime: Runtime, workspace_id: str, phone: str | None = None, bsuid: str | None = None
) -> ContactKey:
    """The key of the contact known by ``phone`` or ``bsuid`` (the test fails if there is none)."""
    key = await runtime.directory.find(workspace_id, Identities(phone=phone, bsuid=bsuid))
    assert key is not None, f"no contact known as {phone or bsuid}"
    return key


async def contact_of(
    runtime: Runtime, workspace_id: str, phone: str | None = None, bsuid: str | None = None
) -> dict[str, Any] | None:
    """The stored document of that contact (None if it has none yet)."""
    key = await runtime.directory.find(workspace_id, Identities(phone=phone, bsuid=bsuid))
    return await runtime.contacts.load(key) if key is not None else None
