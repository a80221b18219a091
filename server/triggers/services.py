"""What a server process holds for triggers: repositories, the inbound-rule cache, the broadcast runner.

Built by the runtime (``runtime.triggers``) so the composition root stays a few lines; recovery of
webhook requests that were stored but not applied runs with the runtime's periodic recovery.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from server.expiring import ExpiringCache
from server.store.broadcasts import (
    AudienceRepository,
    BroadcastRepository,
    MessagingLimitRepository,
    RecipientRepository,
)
from server.store.triggers import HookRequestRepository, InboundTriggerRepository, WebhookTriggerRepository
from server.triggers.broadcast_runner import BroadcastRunner
from server.triggers.keywords import InboundRule, compile_rules, pick
from server.triggers.replays import ReplayGuard

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger(__name__)

RULES_TTL_SECONDS = 5.0
HOOK_GRACE = timedelta(seconds=30)


class TriggerServices:
    def __init__(self, runtime: Runtime) -> None:
        database = runtime.database
        self.runtime = runtime
        self.webhooks = WebhookTriggerRepository(database, runtime.secrets)
        self.inbound = InboundTriggerRepository(database)
        self.hook_requests = HookRequestRepository(database)
        self.broadcasts = BroadcastRepository(database)
        self.recipients = RecipientRepository(database)
        self.audience = AudienceRepository(database)
        self.limits = MessagingLimitRepository(database)
        self.runner = BroadcastRunner(runtime)
        self.hook_grace = HOOK_GRACE
        # Timestamped webhook signatures are single-use within their tolerance (shared by replicas).
        self.replays = ReplayGuard(runtime.redis, runtime.prefix + "hook-signature:")
        self._rules: ExpiringCache[str, list[InboundRule]] = ExpiringCache(RULES_TTL_SECONDS)

    def start(self) -> asyncio.Task[None]:
        """The broadcast runner task; the runtime cancels it first on stop, before the actors."""
        return asyncio.create_task(self.runner.run(), name="broadcast-runner")

    async def rules_of(self, workspace_id: str) -> list[InboundRule]:
        """The workspace's inbound triggers, cached briefly: every unanswered message asks."""

        async def load() -> list[InboundRule]:
            return compile_rules(await self.inbound.list(workspace_id))

        return await self._rules.get(workspace_id, load)

    def forget_rules(self, workspace_id: str) -> None:
        self._rules.forget(workspace_id)

    async def inbound_trigger_for(
        self, workspace_id: str, text: str | None, button_id: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """For the contact actor: the flow a message starts when no run waits for it (or None)."""
        rules = await self.rules_of(workspace_id)
        return pick(rules, text) if rules else None

    async def recover(self) -> int:
        """Apply webhook requests stored before a crash but never handed to their actor."""
        from server.triggers.webhooks import apply_request

        pending = await self.hook_requests.unapplied(self.runtime.clock.now() - self.hook_grace)
        if pending:
            log.info("recovery: applying %d stored webhook requests", len(pending))
            await asyncio.gather(*(apply_request(self.runtime, r) for r in pending))
        return len(pending)
