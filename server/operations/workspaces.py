"""A workspace's own settings, edited by its ADMIN keys: its name, the time zone and locale its
customers' values are read and written in, the country national phone numbers belong to, and its
opt-out words.

Each setting keeps one home (the default country and the opt-out words have their own mutations
too, ``setDefaultCountry`` and ``setOptOutKeywords``, which call the same functions here), and a
change is announced to every server process, so each re-reads the settings at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from server.errors import InvalidInput, NotFound
from server.machines.regional import check_timezone, normalize_locale
from server.operations import consent as consent_ops
from server.phones import country_code
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.store.workspaces import WorkspaceRepository
from server.text_input import checked_name
from server.workspace_gate import SETTINGS, WorkspaceGate

MAX_WORKSPACE_NAME = 120


class WorkspaceServices(Protocol):
    """A workspace's own settings and the gate that caches them."""

    @property
    def workspace_gate(self) -> WorkspaceGate: ...

    @property
    def workspace_settings(self) -> WorkspaceSettingsRepository: ...

    @property
    def workspaces(self) -> WorkspaceRepository: ...


@dataclass(frozen=True)
class WorkspaceChanges:
    """What ``updateWorkspace`` changes: None leaves a setting as it is.

    Send-policy settings (quiet hours) belong here too: a field, its check in ``_checked`` and, when
    stored elsewhere than the workspace document, its write in ``update_workspace``.
    """

    name: str | None = None
    timezone: str | None = None
    locale: str | None = None
    default_country: str | None = None  # "" clears it (national numbers then refused)
    opt_out_keywords: list[str] | None = None

    def empty(self) -> bool:
        return all(value is None for value in vars(self).values())


def checked_workspace_name(value: object) -> str:
    return checked_name(value, field="name", limit=MAX_WORKSPACE_NAME, what="a workspace name")


def checked_country(value: str | None, field: str = "defaultCountry") -> str | None:
    """An ISO 3166 code upper-cased, None for no default country (None or blank)."""
    return country_code(value, field) if value and value.strip() else None


def _checked(changes: WorkspaceChanges) -> dict[str, Any]:
    """The workspace document's fields to set, every value checked before anything is stored."""
    fields: dict[str, Any] = {}
    if changes.name is not None:
        fields["name"] = checked_workspace_name(changes.name)
    if changes.timezone is not None:
        fields["timezone"] = check_timezone(changes.timezone)
    if changes.locale is not None:
        fields["locale"] = normalize_locale(changes.locale)
    if changes.default_country is not None:
        fields["default_country"] = checked_country(changes.default_country)
    return fields


async def update_workspace(
    services: WorkspaceServices, workspace_id: str, changes: WorkspaceChanges
) -> dict[str, Any]:
    """Change the given settings (each checked first: a refusal stores nothing).

    Runs read the new settings from their next turn (every process at once: the change is
    announced); values already stored keep their moment, only how they are written changes.
    """
    if changes.empty():
        raise InvalidInput(
            "give at least one setting to change: name, timezone, locale, defaultCountry or optOutKeywords"
        )
    fields = _checked(changes)
    words = None
    if changes.opt_out_keywords is not None:
        words = consent_ops.checked_opt_out_keywords(changes.opt_out_keywords, "optOutKeywords")
    if await services.workspaces.get(workspace_id) is None:
        raise NotFound("workspace not found")
    if words is not None:
        await services.workspace_settings.set(workspace_id, consent_ops.OPT_OUT_SETTING, words)
    updated = await services.workspaces.update(workspace_id, fields)
    if updated is None:
        raise NotFound("workspace not found")
    await services.workspace_gate.changed(workspace_id, SETTINGS)
    return updated


async def set_default_country(
    services: WorkspaceServices, workspace_id: str, country: str | None
) -> str | None:
    """``setDefaultCountry``: the country national phone numbers belong to (None clears it)."""
    code = checked_country(country, "country")
    updated = await services.workspaces.update(workspace_id, {"default_country": code})
    if updated is None:
        raise NotFound("workspace not found")
    await services.workspace_gate.changed(workspace_id, SETTINGS)
    return code
