"""A workspace's own settings: the time zone and locale its customers' values are read and written in."""

from __future__ import annotations

from typing import Any

from server.errors import InvalidInput, NotFound
from server.machines.regional import check_timezone, normalize_locale
from server.runtime import Runtime


async def update_workspace(
    runtime: Runtime, workspace_id: str, timezone: str | None = None, locale: str | None = None
) -> dict[str, Any]:
    """Change the time zone and/or the locale (checked: an IANA zone, a known BCP 47 tag).

    Runs read the new settings from their next turn (this process at once, others within
    seconds); values already stored keep their moment, only how they are written changes.
    """
    if timezone is None and locale is None:
        raise InvalidInput("give a timezone, a locale or both")
    changes: dict[str, Any] = {}
    if timezone is not None:
        changes["timezone"] = check_timezone(timezone)
    if locale is not None:
        changes["locale"] = normalize_locale(locale)
    updated = await runtime.workspaces.update(workspace_id, changes)
    if updated is None:
        raise NotFound("workspace not found")
    runtime.forget_regional(workspace_id)
    return updated
