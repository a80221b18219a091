"""A workspace's sending settings through the API: quiet hours and the typing indicator.

The rules themselves are in ``server/sending/``; this stores what a caller sets (checked: days,
HH:MM times) and makes this process use it at once (others within the policy's cache time).
"""

from __future__ import annotations

from typing import Any, Protocol

from server.sending.policy import SendPolicy
from server.sending.settings import (
    SendingSettings,
    parse_quiet_hours,
    settings_from_document,
)
from server.store.workspace_settings import WorkspaceSettingsRepository


class SendingSettingsServices(Protocol):
    """A workspace's sending settings and the send policy that caches them."""

    @property
    def send_policy(self) -> SendPolicy: ...

    @property
    def workspace_settings(self) -> WorkspaceSettingsRepository: ...


async def sending_settings(
    services: SendingSettingsServices, workspace_id: str
) -> tuple[SendingSettings, str]:
    """The settings and the workspace's time zone (the fallback for contacts of unknown zone)."""
    rules = await services.send_policy.rules_of(workspace_id)
    return rules.settings, rules.timezone


async def update_sending_settings(
    services: SendingSettingsServices,
    workspace_id: str,
    quiet_hours: list[dict[str, Any]] | None,
    typing_indicator: bool | None,
) -> tuple[SendingSettings, str]:
    """Replace the quiet hours (an empty list turns them off) and/or the typing indicator switch;
    what is not given stays as it is."""
    stored = await services.workspace_settings.get(workspace_id)
    current = settings_from_document(stored.get("sending"))
    windows = parse_quiet_hours(quiet_hours) if quiet_hours is not None else current.quiet_hours
    typing = current.typing_indicator if typing_indicator is None else bool(typing_indicator)
    updated = SendingSettings(quiet_hours=windows, typing_indicator=typing)
    await services.workspace_settings.set(workspace_id, "sending", updated.document())
    services.send_policy.forget(workspace_id)
    return await sending_settings(services, workspace_id)
