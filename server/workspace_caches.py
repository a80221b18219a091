"""What every turn (and many API calls) reads of a workspace, cached briefly per process.

The time zone and locale, the typed fields, the default phone country, the turn's extras
(templates, field links, opt-out words) and the inbound keyword rules. A change made in this
process clears its entry at once (``forget_*``); other processes see it within ``TTL_SECONDS``,
or at once when the change is announced (``server/workspace_gate.py``: ``forget``).
"""

from __future__ import annotations

from typing import Any

from server.actors.contact_commands import TurnExtras
from server.expiring import ExpiringCache
from server.machines.catalog import summarize_template
from server.machines.contact_state import opt_out_keys
from server.machines.keywords import InboundRule, compile_rules, pick
from server.machines.regional import Regional, workspace_regional
from server.store.catalog import FieldRepository, TemplateRepository
from server.store.triggers import InboundTriggerRepository, WebhookTriggerRepository
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.store.workspaces import WorkspaceRepository

TTL_SECONDS = 5.0

FieldTypes = dict[str, tuple[str, list[str]]]


class WorkspaceCaches:
    def __init__(
        self,
        workspaces: WorkspaceRepository,
        fields: FieldRepository,
        templates: TemplateRepository,
        settings: WorkspaceSettingsRepository,
        webhooks: WebhookTriggerRepository,
        inbound: InboundTriggerRepository,
        ttl_seconds: float = TTL_SECONDS,
    ) -> None:
        self._workspaces = workspaces
        self._fields_repository = fields
        self._templates = templates
        self._settings = settings
        self._webhooks = webhooks
        self._inbound = inbound
        self._regional: ExpiringCache[str, Regional] = ExpiringCache(ttl_seconds)
        self._fields: ExpiringCache[str, FieldTypes] = ExpiringCache(ttl_seconds)
        self._countries: ExpiringCache[str, str | None] = ExpiringCache(ttl_seconds)
        self._extras: ExpiringCache[str, TurnExtras] = ExpiringCache(ttl_seconds)
        self._rules: ExpiringCache[str, list[InboundRule]] = ExpiringCache(ttl_seconds)

    async def regional_of(self, workspace_id: str) -> Regional:
        """The workspace's time zone and locale."""

        async def load() -> Regional:
            return workspace_regional(await self._workspaces.get(workspace_id))

        return await self._regional.get(workspace_id, load)

    async def timezone_of(self, workspace_id: str) -> str:
        return (await self.regional_of(workspace_id)).timezone

    async def fields_of(self, workspace_id: str) -> FieldTypes:
        """The workspace's typed fields: name -> (type, options)."""

        async def load() -> FieldTypes:
            found = await self._fields_repository.list(workspace_id)
            return {f["name"]: (f["type"], list(f.get("options") or [])) for f in found}

        return await self._fields.get(workspace_id, load)

    async def default_country_of(self, workspace_id: str) -> str | None:
        """The country national phone numbers of this workspace belong to (``setDefaultCountry``)."""
        return await self._countries.get(workspace_id, lambda: self._webhooks.workspace_country(workspace_id))

    async def extras_of(self, workspace_id: str) -> TurnExtras:
        """Templates (category, components, quick-reply titles), field links, opt-out words and the
        locale: what a turn needs of the workspace besides the contact and the flow."""
        return await self._extras.get(workspace_id, lambda: self._load_extras(workspace_id))

    async def _load_extras(self, workspace_id: str) -> TurnExtras:
        templates = await self._templates.list(workspace_id)
        fields = await self._fields_repository.list(workspace_id)
        settings = await self._settings.get(workspace_id)
        categories = {(t["name"], ""): t["category"] for t in templates}
        categories.update({(t["name"], t["language"]): t["category"] for t in templates})
        by_key: dict[tuple[str, str], dict[str, Any]] = {(t["name"], ""): t for t in templates}
        by_key.update({(t["name"], t["language"]): t for t in templates})
        return TurnExtras(
            template_categories=categories,
            field_links={f["name"]: f["external"] for f in fields if f.get("external")},
            opt_out_keys=opt_out_keys(settings.get("opt_out_keywords") or []),
            template_buttons={
                (t["name"], t["language"]): list(summarize_template(t).quick_replies) for t in templates
            },
            templates=by_key,
            locale=(await self.regional_of(workspace_id)).locale,
        )

    async def template_of(self, workspace_id: str, name: str, language: str | None) -> dict[str, Any] | None:
        """A template as the turn extras hold it (``language`` None: its first language), or None.

        What the WhatsApp channel checks before each send: a broadcast asked the store once per
        message for the same document (issue 19). The channel reads the store when this finds
        nothing sendable, so a template created or approved in another process is never refused
        on this cache's word."""
        templates = (await self.extras_of(workspace_id)).templates
        if language:
            return templates.get((name, language))
        languages = sorted(lang for (each, lang) in templates if each == name and lang)
        return templates[(name, languages[0])] if languages else None

    async def rules_of(self, workspace_id: str) -> list[InboundRule]:
        """The workspace's inbound keyword triggers, compiled: every unanswered message asks."""

        async def load() -> list[InboundRule]:
            return compile_rules(await self._inbound.list(workspace_id))

        return await self._rules.get(workspace_id, load)

    async def inbound_trigger_for(
        self, workspace_id: str, text: str | None, button_id: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """For the contact actor: the flow a message starts when no run waits for it (or None)."""
        rules = await self.rules_of(workspace_id)
        return pick(rules, text) if rules else None

    def forget_regional(self, workspace_id: str) -> None:
        self._regional.forget(workspace_id)
        self._extras.forget(workspace_id)  # turns take the locale from there

    def forget_fields(self, workspace_id: str) -> None:
        self._fields.forget(workspace_id)
        self._extras.forget(workspace_id)  # field links

    def forget_default_country(self, workspace_id: str) -> None:
        self._countries.forget(workspace_id)

    def forget_extras(self, workspace_id: str) -> None:
        self._extras.forget(workspace_id)

    def forget_rules(self, workspace_id: str) -> None:
        self._rules.forget(workspace_id)

    def forget(self, workspace_id: str) -> None:
        """Everything of one workspace (its settings changed in some process)."""
        self.forget_regional(workspace_id)
        self.forget_fields(workspace_id)
        self.forget_default_country(workspace_id)
        self.forget_rules(workspace_id)
