"""What the server's operator does with workspaces: create (with its first ADMIN key, shown once),
list, disable, enable and delete. Called by the operator API (``server/graphql/operator.py``),
which ``konvo workspace`` drives.

- **disable**: the workspace's keys are refused (``WORKSPACE_DISABLED``) and its sockets closed,
  its webhooks (WhatsApp and ``/hooks``) answered 410 with nothing stored, and no turn of its
  contacts runs: timers are held in their contacts, broadcasts pause, external (Klaviyo) syncs
  wait. Nothing is lost.
- **enable**: all of it works again; timers held meanwhile are re-armed, one already due fires at
  once, and outboxes left undelivered are sent; waiting syncs go with the next recovery pass.
- **delete**: the workspace is marked ``deleting`` (so everything is refused as when disabled),
  then the deletion waits until no process has work of it in flight (a turn, a webhook, a
  broadcast admitted before: ``WorkspaceGate.drain_for_deletion``), then its Redis keys and jobs,
  its documents in every collection and finally the workspace document itself are removed. A
  deletion cut short (a crash), or one that could not see every live replica drain in
  ``KONVO_WORKSPACE_DRAIN_SECONDS``, leaves the workspace listed as ``DELETING`` (with its data
  removed); deleting it again finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from arq.connections import ArqRedis

from server.actors.recovery import rearm_workspace
from server.actors.timers import ArqTimerScheduler
from server.clock import Clock
from server.config import Settings
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import new_id
from server.machines.regional import check_timezone, default_locale, normalize_locale
from server.operations.workspaces import checked_country, checked_workspace_name
from server.redis_clients import RedisCommands
from server.redis_keys import integrations_queue
from server.services import ActorsHandle
from server.store.contacts import ContactRepository
from server.store.database import Database
from server.store.workspace_data import (
    WORKSPACES,
    delete_workspace_documents,
    workspace_names,
)
from server.store.workspaces import (
    ACTIVE,
    ADMIN,
    DELETING,
    DISABLED,
    STATUSES,
    WorkspaceRepository,
    new_api_key,
    status_of,
)
from server.workspace_gate import DELETED, WorkspaceGate
from server.workspace_redis import RedisSweep, WorkspaceRedis

log = logging.getLogger(__name__)

FIRST_KEY_NAME = "first admin key"


class WorkspaceAdminServices(Protocol):
    """Creating, listing and disabling workspaces: their repository, the gate, the clock."""

    @property
    def clock(self) -> Clock: ...

    @property
    def workspace_gate(self) -> WorkspaceGate: ...

    @property
    def workspaces(self) -> WorkspaceRepository: ...


class WorkspaceEnableServices(WorkspaceAdminServices, Protocol):
    """Enabling a workspace again: its contacts' timers come back and its actors are told,
    and the broadcast runner looks for broadcasts due."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def timers(self) -> ArqTimerScheduler: ...

    @property
    def wake_broadcasts(self) -> Callable[[], None]: ...


class WorkspaceDeletionServices(WorkspaceAdminServices, Protocol):
    """Deleting a workspace: the whole store, and the deployment's Redis keys and timers."""

    @property
    def arq(self) -> ArqRedis: ...

    @property
    def database(self) -> Database: ...

    @property
    def prefix(self) -> str: ...

    @property
    def redis(self) -> RedisCommands: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def timers(self) -> ArqTimerScheduler: ...


@dataclass(frozen=True)
class NewWorkspace:
    name: str
    timezone: str
    locale: str | None = None
    default_country: str | None = None


@dataclass
class Deletion:
    """What deleting a workspace removed: documents per collection, Redis keys and queued jobs.
    ``finished`` False: work of it may still have been in flight (on ``undrained`` replicas, or
    here when ``undrained`` is empty), so its document stays ``deleting`` until deleted again."""

    workspace_id: str
    documents: dict[str, int]
    redis: RedisSweep
    finished: bool = True
    undrained: list[str] = field(default_factory=list)


async def create_workspace(
    services: WorkspaceAdminServices, spec: NewWorkspace
) -> tuple[dict[str, Any], str]:
    """A new active workspace and its first ADMIN key (the plain key: shown this once)."""
    name = checked_workspace_name(spec.name)
    timezone = check_timezone(spec.timezone)
    country = checked_country(spec.default_country)
    locale = normalize_locale(spec.locale) if spec.locale else default_locale(timezone, country)
    now = services.clock.now()
    workspace_id = new_id("ws")
    document = {
        "_id": workspace_id,
        "name": name,
        "timezone": timezone,
        "locale": locale,
        "default_country": country,
        "status": ACTIVE,
        "created_at": now,
        "created_by": "operator",
    }
    await services.workspaces.create(document)
    api_key = new_api_key()
    await services.workspaces.add_key(workspace_id, api_key, ADMIN, FIRST_KEY_NAME, now)
    log.info("operator created workspace %s", workspace_id)
    return document, api_key


async def list_workspaces(
    services: WorkspaceAdminServices, status: str | None, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
    return await services.workspaces.page(status, after_id, limit)


async def require_workspace(services: WorkspaceAdminServices, workspace_id: str) -> dict[str, Any]:
    found = await services.workspaces.get(workspace_id)
    if found is None:
        raise NotFound(f"no workspace {workspace_id!r}", field="id")
    return found


async def disable_workspace(services: WorkspaceAdminServices, workspace_id: str) -> dict[str, Any]:
    """Stop the workspace (idempotent: disabling a disabled one keeps its first ``disabled_at``)."""
    found = await require_workspace(services, workspace_id)
    if status_of(found) == DISABLED:
        return found
    _refuse_if_deleting(found)
    changes = {"disabled_at": services.clock.now()}
    updated = await services.workspaces.set_status(workspace_id, DISABLED, changes)
    if updated is None:
        _refuse_if_deleting(await require_workspace(services, workspace_id))
        raise NotFound(f"no workspace {workspace_id!r}", field="id")
    await services.workspace_gate.changed(workspace_id, DISABLED)
    log.info("operator disabled workspace %s", workspace_id)
    return updated


async def enable_workspace(services: WorkspaceEnableServices, workspace_id: str) -> dict[str, Any]:
    """Let the workspace work again; what was held (timers, outboxes, broadcasts) resumes."""
    found = await require_workspace(services, workspace_id)
    _refuse_if_deleting(found)
    if status_of(found) == ACTIVE:
        return found
    updated = await services.workspaces.set_status(workspace_id, ACTIVE, {"disabled_at": None})
    if updated is None:
        _refuse_if_deleting(await require_workspace(services, workspace_id))
        raise NotFound(f"no workspace {workspace_id!r}", field="id")
    await services.workspace_gate.changed(workspace_id, ACTIVE)
    await rearm_workspace(services.contacts, services.timers, services.actors, services.clock, workspace_id)
    services.wake_broadcasts()  # broadcasts it paused resume now
    log.info("operator enabled workspace %s", workspace_id)
    return updated


async def delete_workspace(services: WorkspaceDeletionServices, workspace_id: str) -> Deletion:
    """Remove everything of the workspace, in the store and in Redis (see the module's docstring)."""
    await require_workspace(services, workspace_id)
    await services.workspaces.set_status(workspace_id, DELETING, {"deleting_at": services.clock.now()})
    # Keys, webhooks and turns refused from now on every process; what they admitted before ends.
    drained = await services.workspace_gate.drain_for_deletion(
        workspace_id, services.settings.workspace_drain_seconds
    )
    names = await workspace_names(services.database, workspace_id)
    sweep = await _redis_of(services).delete(names)
    documents = await delete_workspace_documents(services.database, workspace_id)
    if not drained.complete:
        undrained = sorted(drained.unacknowledged)
        log.warning(
            "operator deleted workspace %s's data (%d documents, %d Redis keys) but work of it may "
            "still be in flight on %s: it stays DELETING; run deleteWorkspace again to finish",
            workspace_id,
            sum(documents.values()),
            sweep.keys,
            ", ".join(undrained) if undrained else "this process",
        )
        return Deletion(workspace_id, documents, sweep, finished=False, undrained=undrained)
    documents[WORKSPACES] = await services.workspaces.remove(workspace_id)
    await services.workspace_gate.changed(workspace_id, DELETED)
    log.info(
        "operator deleted workspace %s: %d documents, %d Redis keys, %d queued jobs",
        workspace_id,
        sum(documents.values()),
        sweep.keys,
        sweep.jobs,
    )
    return Deletion(workspace_id, documents, sweep)


def _redis_of(services: WorkspaceDeletionServices) -> WorkspaceRedis:
    """The sweep over this deployment's keys and the queues whose jobs name a workspace."""
    queues = [services.timers.queue_name]
    queues.append(integrations_queue(services.prefix))  # the Klaviyo sync's (server/contact_services.py)
    return WorkspaceRedis(services.redis, services.prefix, queues, services.arq.job_deserializer)


def _refuse_if_deleting(workspace: dict[str, Any]) -> None:
    if status_of(workspace) == DELETING:
        raise Conflict(
            f"workspace {workspace['_id']} is being deleted; run deleteWorkspace again to finish",
            field="id",
        )
