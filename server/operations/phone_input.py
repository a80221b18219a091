"""Phone numbers given to the API or in import rows: parsed in the workspace's default country.

The parsing rules live in ``server/phones.py``; this adds the workspace's ``default_country``
(a national number like ``600 111 222`` then means the same contact as ``+34600111222``).
"""

from __future__ import annotations

from server.ids import ContactKey
from server.phones import parse_phone
from server.runtime import Runtime


async def contact_phone(runtime: Runtime, workspace_id: str, raw: object, field: str = "phone") -> str:
    """``raw`` as E.164, or ``InvalidInput`` naming ``field``."""
    return parse_phone(raw, field=field, region=await runtime.default_country_of(workspace_id))


async def contact_key(runtime: Runtime, workspace_id: str, raw: object, field: str = "phone") -> ContactKey:
    """The contact (actor) a phone argument names in this workspace."""
    return ContactKey(workspace_id, await contact_phone(runtime, workspace_id, raw, field))
