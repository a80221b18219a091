"""What a server process runs for triggers: the broadcast runner, and the recovery of webhook
requests that were stored but never handed to their contact's actor.

Built by the composition root, which hands it its ``Services``; it reads only what
``TriggerWorkerServices`` lists (the runner's services and the webhook requests'). Recovery runs
with the root's periodic recovery.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from server.triggers.broadcast_runner import BroadcastRunner, BroadcastRunnerServices
from server.triggers.webhooks import HookApplyServices, apply_request

log = logging.getLogger(__name__)

HOOK_GRACE = timedelta(seconds=30)


class TriggerWorkerServices(BroadcastRunnerServices, HookApplyServices, Protocol):
    """What the trigger workers (the broadcast runner, webhook request recovery) use."""


class TriggerServices:
    def __init__(self, services: TriggerWorkerServices, broadcasts_due: asyncio.Event) -> None:
        self._services = services
        self.runner = BroadcastRunner(services, broadcasts_due)
        self.hook_grace = HOOK_GRACE

    def start(self) -> asyncio.Task[None]:
        """The broadcast runner task; the services cancels it first on stop, before the actors."""
        return asyncio.create_task(self.runner.run(), name="broadcast-runner")

    async def recover(self) -> int:
        """Apply webhook requests stored before a crash but never handed to their actor."""
        services = self._services
        pending = await services.hook_requests.unapplied(services.clock.now() - self.hook_grace)
        if pending:
            log.info("recovery: applying %d stored webhook requests", len(pending))
            await asyncio.gather(*(apply_request(services, r) for r in pending))
        return len(pending)
