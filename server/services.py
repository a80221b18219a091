"""The services use cases take: one frozen set, built once by the composition root (``server/runtime.py``).

The GraphQL resolvers and the HTTP edges hold a ``Services`` and nothing else of the process:
repositories, the clock, the per-workspace caches, pub/sub, the channel router, the send policy
and the actors handle. Use cases (``server/operations/``, ``server/triggers/``) never take it
whole: each declares the few members it reads as a ``Protocol`` of read-only properties next to
its functions (``TagServices``, ``PublishServices``...), which this frozen dataclass satisfies
structurally, so a signature says what a use case touches and mypy holds it to that. Nobody below
the edges imports the root, which only starts, stops and reports health.

May import: actors, machines, store, channels, sending, pubsub and the modules of the ground floor
(clock, config, errors, ids, egress, secret_box, contact_directory, workspace_gate, workspace_caches);
Never operations, triggers, runtime, graphql or web.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from arq.connections import ArqRedis

from server.actors.agent_picker import AgentPicker
from server.actors.events import Event, TurnResult
from server.actors.flow_cache import FlowCache
from server.actors.message_statuses import StatusLedger
from server.actors.shards import ShardedActors
from server.actors.timers import ArqTimerScheduler
from server.channels.router import ChannelRouter
from server.channels.whatsapp.client import GraphClient
from server.clock import Clock, Timing
from server.config import Settings
from server.contact_directory import ContactDirectory
from server.egress import EgressPolicy
from server.errors import Unavailable
from server.ids import ContactKey
from server.machines.connections import ConnectionMemo
from server.pubsub import RedisPubSub
from server.redis_clients import RedisCommands
from server.secret_box import SecretBox
from server.sending.policy import SendPolicy
from server.store.broadcasts import (
    AudienceRepository,
    BroadcastRepository,
    MessagingLimitRepository,
    RecipientRepository,
)
from server.store.catalog import (
    AgentRepository,
    AgentTeams,
    FieldRepository,
    TagRepository,
    TemplateRepository,
)
from server.store.channels import ChannelRepository
from server.store.contacts import ContactRepository
from server.store.database import Database
from server.store.flow_counters import FlowCounterRepository
from server.store.flows import FlowRepository
from server.store.identities import IdentityRepository
from server.store.messages import MessageRepository
from server.store.runs import RunRepository
from server.store.statuses import MessageStatusRepository
from server.store.teams import TeamRepository
from server.store.triggers import HookRequestRepository, InboundTriggerRepository, WebhookTriggerRepository
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.store.workspaces import WorkspaceRepository
from server.workspace_caches import WorkspaceCaches
from server.workspace_gate import WorkspaceGate


class SignatureClaims(Protocol):
    """Timestamped webhook signatures, single-use within their tolerance (``triggers/replays.py``)."""

    async def claim(self, key: str) -> bool: ...

    async def release(self, key: str) -> None: ...


class ActorsHandle:
    """The actor system as use cases reach it: built before the root starts the actors, and
    answering ``Unavailable`` until they run (a request that arrives during start or after stop)."""

    def __init__(self) -> None:
        self._system: ShardedActors | None = None

    def bind(self, system: ShardedActors) -> None:
        self._system = system

    @property
    def system(self) -> ShardedActors | None:
        """The running actor system, or None before start (background workers check it)."""
        return self._system

    @property
    def started(self) -> bool:
        return self._system is not None

    def _running(self) -> ShardedActors:
        if self._system is None:
            raise Unavailable("the server is not started")
        return self._system

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        """Queue an event without waiting for its turn (safe from inside an actor's own turn)."""
        return self._running().tell(key, event)

    async def ask(self, key: ContactKey, event: Event) -> TurnResult:
        """Run a turn and wait for it."""
        return await self._running().ask(key, event)


@dataclass(frozen=True)
class Services:
    # the process
    settings: Settings
    clock: Clock
    timing: Timing  # elapsed time and waiting: polls, back-offs, throttles (server/clock.py)
    secrets: SecretBox
    egress: EgressPolicy
    prefix: str  # of every Redis key of this deployment
    database: Database  # for the few whole-store operations (workspace deletion, erasure, exports)
    redis: RedisCommands
    arq: ArqRedis
    timers: ArqTimerScheduler
    # repositories
    workspaces: WorkspaceRepository
    workspace_settings: WorkspaceSettingsRepository
    flows: FlowRepository
    contacts: ContactRepository
    identities: IdentityRepository
    runs: RunRepository
    messages: MessageRepository
    message_statuses: MessageStatusRepository
    tags: TagRepository
    fields: FieldRepository
    agents: AgentRepository
    teams: TeamRepository
    members: AgentTeams
    templates: TemplateRepository
    channels: ChannelRepository
    flow_counters: FlowCounterRepository
    webhooks: WebhookTriggerRepository
    inbound: InboundTriggerRepository
    hook_requests: HookRequestRepository
    broadcasts: BroadcastRepository
    recipients: RecipientRepository
    audience: AudienceRepository
    limits: MessagingLimitRepository
    # per-process parts
    directory: ContactDirectory
    caches: WorkspaceCaches
    flow_cache: FlowCache
    flow_connections: ConnectionMemo  # connection-loop checks of the validator
    channel: ChannelRouter
    graph: GraphClient
    pubsub: RedisPubSub
    ledger: StatusLedger
    send_policy: SendPolicy
    workspace_gate: WorkspaceGate
    picker: AgentPicker
    replays: SignatureClaims
    actors: ActorsHandle
    wake_broadcasts: Callable[[], None]  # the broadcast runner looks for due broadcasts now
