"""The per-process services behind contacts: consent, assignment, inbox news and Klaviyo sync.

Built by the composition root (``Runtime``), which hands their callables to the actors:
``extras_of`` (what a turn needs from the workspace, cached briefly), ``picker.for_node`` (the
``assign`` node's agent) and ``after_turn`` (inbox news and external syncs after a commit).
Kept out of ``runtime.py`` so the root stays a list of parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.actors.contact_commands import TurnExtras
from server.expiring import ExpiringCache
from server.graphql.pubsub import inbox_topic
from server.integrations.klaviyo import KlaviyoClient
from server.integrations.klaviyo_sync import KlaviyoSync
from server.machines.contact_state import opt_out_keys
from server.operations.agent_picker import AgentPicker
from server.redis_keys import integrations_queue
from server.store.catalog import AgentTeams
from server.store.teams import TeamRepository
from server.store.workspace_settings import WorkspaceSettingsRepository

log = logging.getLogger(__name__)

EXTRAS_TTL_SECONDS = 5.0


class ContactServices:
    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self.teams = TeamRepository(runtime.database)
        self.members = AgentTeams(runtime.database)
        self.settings = WorkspaceSettingsRepository(runtime.database, runtime.secrets)
        self.picker = AgentPicker(runtime.agents, self.members, self.teams, runtime.contacts, runtime.clock)
        self.klaviyo: KlaviyoSync | None = None
        self._extras: ExpiringCache[str, TurnExtras] = ExpiringCache(EXTRAS_TTL_SECONDS)
        self._tasks: list[asyncio.Task[Any]] = []
        from server.operations.contact_import import ContactImports  # operations import the runtime

        self.imports = ContactImports(runtime)

    async def extras_of(self, workspace_id: str) -> TurnExtras:
        """Templates (category, components, quick-reply titles), field links, opt-out words and the
        locale; changes made here clear it at once (``forget``), other processes see them within
        ``EXTRAS_TTL_SECONDS``."""
        return await self._extras.get(workspace_id, lambda: self._load_extras(workspace_id))

    async def _load_extras(self, workspace_id: str) -> TurnExtras:
        from server.operations.catalog import summarize_template  # operations import the runtime

        runtime = self._runtime
        templates = await runtime.templates.list(workspace_id)
        fields = await runtime.fields.list(workspace_id)
        settings = await self.settings.get(workspace_id)
        categories = {(t["name"], ""): t["category"] for t in templates}
        categories.update({(t["name"], t["language"]): t["category"] for t in templates})
        by_key = {(t["name"], ""): t for t in templates}
        by_key.update({(t["name"], t["language"]): t for t in templates})
        return TurnExtras(
            template_categories=categories,
            field_links={f["name"]: f["external"] for f in fields if f.get("external")},
            opt_out_keys=opt_out_keys(settings.get("opt_out_keywords") or []),
            template_buttons={
                (t["name"], t["language"]): list(summarize_template(t).quick_replies) for t in templates
            },
            templates=by_key,
            locale=(await runtime.regional_of(workspace_id)).locale,
        )

    def forget(self, workspace_id: str) -> None:
        self._extras.forget(workspace_id)

    async def after_turn(self, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        """After a commit: tell inbox subscribers, and hand new external updates to the sync."""
        if after.get("last_message_at") is not None:
            try:
                await self._runtime.pubsub.publish(inbox_topic(after["workspace_id"]), after)
            except Exception:
                log.exception("publishing the inbox update of %s failed", after["_id"])
        if self.klaviyo is not None and after.get("external_sync"):
            try:
                await self.klaviyo.after_turn(before, after)
            except Exception:  # recovery enqueues it later: the document holds the entry
                log.exception("enqueueing the Klaviyo sync of %s failed", after["_id"])

    async def start(self) -> None:
        runtime = self._runtime
        from server.operations.contact_erasure import ERASED_TOPIC  # operations import the runtime

        # An erased contact's identities are forgotten by every process's directory cache.
        runtime.pubsub.on(ERASED_TOPIC, lambda news: runtime.directory.forget_contact(news["contact_id"]))
        self.klaviyo = KlaviyoSync(
            runtime.contacts,
            self.settings,
            runtime.arq,
            integrations_queue(runtime.prefix),
            lambda: runtime.actors,
            runtime.clock,
            KlaviyoClient(runtime.egress),
            may_act=runtime.workspace_gate.may_act,
        )
        if runtime.settings.start_timer_worker:
            worker = self.klaviyo.worker(runtime.settings.timer_poll_seconds)
            self._tasks.append(asyncio.create_task(worker.main(), name="integrations-worker"))
            await self.imports.resume()

    async def recover(self) -> None:
        if self.klaviyo is not None:
            await self.klaviyo.recover()

    async def stop(self) -> None:
        await self.imports.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.klaviyo is not None:
            await self.klaviyo.client.aclose()
