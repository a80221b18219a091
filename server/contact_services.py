"""The per-process workers behind contacts: the Klaviyo sync after each commit and contact
imports.

Built by the composition root (``Runtime``), which hands it its ``Services``; it reads only what
``ContactWorkerServices`` lists. The root hands ``after_turn``
to the actors (external syncs after a commit) and starts and stops the workers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from arq.connections import ArqRedis

from server.cancellation import cancel_all_and_wait
from server.config import Settings
from server.documents import ContactDoc
from server.egress import EgressPolicy
from server.integrations.klaviyo import KlaviyoClient
from server.integrations.klaviyo_sync import KlaviyoSync
from server.operations.contact_erasure import ERASED_TOPIC
from server.operations.contact_import import ContactImports, ImportServices
from server.redis_keys import integrations_queue
from server.store.contacts import ContactRepository
from server.store.workspace_settings import WorkspaceSettingsRepository

log = logging.getLogger(__name__)


class ContactWorkerServices(ImportServices, Protocol):
    """What the contact workers (the Klaviyo sync, contact imports) use."""

    @property
    def arq(self) -> ArqRedis: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def egress(self) -> EgressPolicy: ...

    @property
    def prefix(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def workspace_settings(self) -> WorkspaceSettingsRepository: ...


class ContactServices:
    def __init__(self, services: ContactWorkerServices) -> None:
        self._services = services
        self.klaviyo: KlaviyoSync | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.imports = ContactImports(services)

    async def after_turn(self, before: ContactDoc | None, after: ContactDoc) -> None:
        """After a commit: hand new external updates to the sync. (Inbox subscribers hear of the
        commit from the turn's news, ``RedisPubSub.contact_changed``: one message per turn.)"""
        if self.klaviyo is not None and after.get("external_sync"):
            try:
                await self.klaviyo.after_turn(before, after)
            except Exception:  # recovery enqueues it later: the document holds the entry
                log.exception("enqueueing the Klaviyo sync of %s failed", after["_id"])

    async def start(self) -> None:
        services = self._services
        # An erased contact's identities are forgotten by every process's directory cache.
        services.pubsub.on(ERASED_TOPIC, lambda news: services.directory.forget_contact(news["contact_id"]))
        self.klaviyo = KlaviyoSync(
            services.contacts,
            services.workspace_settings,
            services.arq,
            integrations_queue(services.prefix),
            lambda: services.actors,
            services.clock,
            KlaviyoClient(services.egress, sleep=services.timing.sleep),
            gate=services.workspace_gate,
        )
        if services.settings.start_timer_worker:
            worker = self.klaviyo.worker(services.settings.integrations_poll_seconds)
            self._tasks.append(asyncio.create_task(worker.main(), name="integrations-worker"))
            await self.imports.resume()

    async def recover(self) -> None:
        if self.klaviyo is not None:
            await self.klaviyo.recover()

    async def stop(self) -> None:
        await self.imports.stop()
        await cancel_all_and_wait(self._tasks)
        self._tasks.clear()
        if self.klaviyo is not None:
            await self.klaviyo.client.aclose()
