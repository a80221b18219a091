"""The composition root: connects the store, Redis, actors, timer worker and pub/sub of one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from pymongo.monitoring import CommandListener

from server.actors.agent_picker import AgentPicker
from server.actors.contact_actor import ActorDeps
from server.actors.effects import Effects
from server.actors.events import Event, TurnResult
from server.actors.flow_cache import FlowCache
from server.actors.flow_counters import RECOVERY_WINDOW, FlowCounters
from server.actors.message_statuses import ParkedMarks, StatusLedger
from server.actors.recovery import recover
from server.actors.shards import ShardedActors
from server.actors.timers import ArqTimerScheduler, TimerWorker, migrate_legacy_timers
from server.cancellation import cancel_all_and_wait
from server.channels.router import ChannelRouter
from server.channels.sandbox import SandboxChannel
from server.channels.whatsapp.channel import WhatsAppChannel
from server.channels.whatsapp.client import GraphClient
from server.channels.whatsapp.costs import reconcile as reconcile_cost
from server.channels.whatsapp.limiter import ThroughputLimiter
from server.channels.whatsapp.pair_rate import PairPacer
from server.clock import Clock, SystemClock, SystemTiming, Timing
from server.config import Settings
from server.contact_directory import ContactDirectory
from server.contact_merge import ContactMerger, MergeRepository
from server.contact_services import ContactServices
from server.egress import EgressAllowList, EgressPolicy, Resolver, system_resolver
from server.graphql.key_guard import KeyGuard
from server.graphql.socket_slots import SocketSlots
from server.ids import ContactKey
from server.machines.connections import ConnectionMemo
from server.pubsub import RedisPubSub
from server.redis_clients import RedisCommands, arq_client, redis_client
from server.redis_keys import (
    ARQ_TAG,
    key_prefix,
    legacy_timer_queue,
    recovery_marker,
    socket_slots_prefix,
    timer_queue,
)
from server.secret_box import SecretBox
from server.segments import matches
from server.sending.policy import SendPolicy
from server.sending.settings import SendingRules, settings_from_document
from server.services import ActorsHandle, Services
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
from server.store.identity_migration import backfill_message_contacts, index_contact_identities
from server.store.legacy_ids import LegacyProviderIds
from server.store.messages import MessageRepository
from server.store.runs import RunRepository
from server.store.stats import StoreStats
from server.store.statuses import MessageStatusRepository
from server.store.teams import TeamRepository
from server.store.triggers import HookRequestRepository, InboundTriggerRepository, WebhookTriggerRepository
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.store.workspaces import WorkspaceRepository
from server.triggers.replays import ReplayGuard
from server.triggers.services import TriggerServices
from server.workspace_caches import WorkspaceCaches
from server.workspace_gate import GONE, STOPPED, WorkspaceGate, refusal

log = logging.getLogger(__name__)


class Runtime:
    """Everything a server process shares; built by ``start`` and torn down by ``stop``."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        store_listeners: Sequence[CommandListener] = (),
        resolver: Resolver | None = None,
        timing: Timing | None = None,
    ) -> None:
        """``store_listeners`` watch the store's commands (to count round trips); ``resolver`` answers
        the egress policy's host lookups (tests resolve names without DNS); ``timing`` paces polls,
        retries and throttles (a test may pass a ``VirtualTiming``; what mirrors a Redis key's
        lifetime keeps the system one: ``redis_timing``)."""
        if not settings.mongodb_uri or not settings.redis_url:
            raise RuntimeError("KONVO_MONGODB_URI and KONVO_REDIS_URL must be set before start")
        if settings.secret_key is None:
            raise RuntimeError(
                "KONVO_SECRET_KEY must be set before start (`konvo serve` reads the data dir's)"
            )
        self.settings = settings
        self.clock = clock or SystemClock()
        self.timing = timing or SystemTiming()
        # Deadlines that mirror a Redis key's lifetime (shard leases, WebSocket slots) run on the
        # system timing whatever ``timing`` is: Redis expires keys in real time (server/clock.py).
        self.redis_timing = SystemTiming()
        # Secrets at rest are sealed with these keys; every outbound HTTP call passes this policy.
        self.secrets = SecretBox.from_setting(settings.secret_key.get_secret_value())
        self.egress = EgressPolicy(EgressAllowList.parse(settings.egress_allow), resolver or system_resolver)
        self.prefix = key_prefix(settings.mongodb_db)  # key layout: server/redis_keys.py
        stats = StoreStats() if settings.store_stats else None
        self.database = Database(settings.mongodb_uri, settings.mongodb_db, store_listeners, stats)
        self.workspaces = WorkspaceRepository(self.database)
        self.flows = FlowRepository(self.database)
        self.contacts = ContactRepository(self.database)
        # Finding a contact by a phone or a BSUID (server/contact_directory.py); merges need actors.
        self.identities = IdentityRepository(self.database)
        self.directory = ContactDirectory(self.identities, self.contacts, self.clock, self.timing)
        self.runs = RunRepository(self.database)
        # Provider ids scoped by workspace; documents of older versions found by their bare ids.
        self.legacy_ids = LegacyProviderIds(self.database)
        self.messages = MessageRepository(self.database, self.legacy_ids)
        self.message_statuses = MessageStatusRepository(self.database, self.legacy_ids)
        self.redis: RedisCommands = redis_client(settings.redis_url)
        self.ledger = StatusLedger(
            self.messages,
            self.message_statuses,
            self._tell,
            self.clock,
            price=reconcile_cost,
            marks=ParkedMarks(self.redis, self.prefix + "parked:"),
        )
        self.tags = TagRepository(self.database)
        self.fields = FieldRepository(self.database)
        self.agents = AgentRepository(self.database)
        self.templates = TemplateRepository(self.database)
        self.channels = ChannelRepository(self.database, self.secrets)
        self.workspace_settings = WorkspaceSettingsRepository(self.database, self.secrets)
        self.teams = TeamRepository(self.database)
        self.members = AgentTeams(self.database)
        self.webhooks = WebhookTriggerRepository(self.database, self.secrets)
        self.inbound = InboundTriggerRepository(self.database)
        self.recipients = RecipientRepository(self.database)
        self.flow_cache = FlowCache(self.flows)
        # Time zone, fields, default country, turn extras, keyword rules: cached briefly per process.
        self.caches = WorkspaceCaches(
            self.workspaces, self.fields, self.templates, self.workspace_settings, self.webhooks, self.inbound
        )
        self.templates.on_change(self.caches.forget_extras)  # every template write, whoever made it
        # Who each portfolio reached: one per process, so the runner's count and the channel's share
        # what they stored (``MessagingLimitRepository.record``).
        self.limits = MessagingLimitRepository(self.database)
        # One Graph API client per process (keep-alive); the limiter is shared through Redis.
        self.graph = GraphClient(
            ThroughputLimiter(self.redis, self.prefix, timing=self.timing), self.egress, timing=self.timing
        )
        self.whatsapp = WhatsAppChannel(
            self.graph,
            self.messages,
            self.templates,
            self.contacts,
            self.clock,
            pacer=PairPacer(self.redis, self.prefix, self.clock),
            reach=self.limits,
            cached_template=self.caches.template_of,
        )
        self.channel = ChannelRouter(self.channels, SandboxChannel(self.messages, self.clock), self.whatsapp)
        self.pubsub = RedisPubSub(self.redis, self.prefix + "pubsub:", self.timing)
        # Flow analytics: counters each commit carries, stored exactly once, news to subscribers.
        self.flow_counters = FlowCounterRepository(self.database)
        self.counters = FlowCounters(self.flow_counters, self.pubsub)
        # WebSockets: each operation re-checks its key; revocations reach every process (4403), and
        # one key holds at most max_sockets_per_key sockets across processes.
        self.key_guard = KeyGuard(self.workspaces, self.pubsub, settings.api_key_recheck_seconds, self.timing)
        # An operator's disable/delete reaches every process: keys, webhooks and turns refused; a
        # deletion waits for the work in flight of the workspace on every live replica.
        self.workspace_gate = WorkspaceGate(
            self.workspaces, self.pubsub, replica_id=settings.replica_id, live_replicas=self._live_replicas
        )
        self.workspace_gate.on_change(self._workspace_changed)
        self.socket_slots = SocketSlots(
            self.redis,
            socket_slots_prefix(self.prefix),
            settings.max_sockets_per_key,
            timing=self.redis_timing,
        )
        # Quiet hours, Meta's caps and refusals, the typing indicator (server/sending/).
        self.send_policy = SendPolicy(self._sending_rules, self.clock)
        # arq's client connects on first use: timers can be scheduled once ``start`` pinged Redis.
        self.arq: ArqRedis = arq_client(settings.redis_url, ARQ_TAG)
        self.timers = ArqTimerScheduler(self.arq, timer_queue(self.prefix), self.clock)
        self._actors = ActorsHandle()
        self.actors: ShardedActors | None = None
        self._broadcasts_due = asyncio.Event()
        self.services = Services(
            settings=settings,
            clock=self.clock,
            timing=self.timing,
            secrets=self.secrets,
            egress=self.egress,
            prefix=self.prefix,
            database=self.database,
            redis=self.redis,
            arq=self.arq,
            timers=self.timers,
            workspaces=self.workspaces,
            workspace_settings=self.workspace_settings,
            flows=self.flows,
            contacts=self.contacts,
            identities=self.identities,
            runs=self.runs,
            messages=self.messages,
            message_statuses=self.message_statuses,
            tags=self.tags,
            fields=self.fields,
            agents=self.agents,
            teams=self.teams,
            members=self.members,
            templates=self.templates,
            channels=self.channels,
            flow_counters=self.flow_counters,
            webhooks=self.webhooks,
            inbound=self.inbound,
            hook_requests=HookRequestRepository(self.database),
            broadcasts=BroadcastRepository(self.database),
            recipients=self.recipients,
            audience=AudienceRepository(self.database),
            limits=self.limits,
            directory=self.directory,
            caches=self.caches,
            flow_cache=self.flow_cache,
            flow_connections=ConnectionMemo(),
            channel=self.channel,
            graph=self.graph,
            pubsub=self.pubsub,
            ledger=self.ledger,
            send_policy=self.send_policy,
            workspace_gate=self.workspace_gate,
            picker=AgentPicker(self.agents, self.members, self.teams, self.contacts, self.clock),
            # Timestamped webhook signatures are single-use within their tolerance (shared by replicas).
            replays=ReplayGuard(self.redis, self.prefix + "hook-signature:"),
            actors=self._actors,
            wake_broadcasts=self._broadcasts_due.set,
        )
        # Inbox news, Klaviyo sync and contact imports (server/contact_services.py).
        self.contact_services = ContactServices(self.services)
        # The broadcast runner and webhook-request recovery (server/triggers/services.py).
        self.triggers = TriggerServices(self.services, self._broadcasts_due)
        self._tasks: list[asyncio.Task[Any]] = []
        self._worker: TimerWorker | None = None
        self._stopped = False
        self._effects: Effects | None = None
        self.message_backfill: asyncio.Task[int] | None = None  # the migration's background part
        self.merger = ContactMerger(
            self.contacts,
            self.identities,
            self.messages,
            MergeRepository(self.database),
            self.directory,
            self._ask,
            self.clock,
            gate=self.workspace_gate,
        )
        self.directory.merge = self.merger.merge

    def _live_replicas(self) -> frozenset[str]:
        """The replicas heartbeating the shard leases now (this one included)."""
        return self.actors.leases.live if self.actors is not None else frozenset()

    def _workspace_changed(self, workspace_id: str, change: str) -> None:
        """Announced by ``workspace_gate`` on every process: settings are read again, and the
        sockets of a workspace disabled or deleted are closed."""
        self.caches.forget(workspace_id)
        self.send_policy.forget(workspace_id)  # quiet hours fall back to the workspace's zone
        self.channel.forget(workspace_id)
        if change in STOPPED:
            stopped = refusal(workspace_id, change)
            reason = stopped.message if stopped is not None else "this workspace was deleted"
            self.key_guard.close_workspace(workspace_id, reason)
        if change in GONE:
            self.triggers.runner.stop_workspace(workspace_id)  # its broadcasts stop sending at once

    async def _sending_rules(self, workspace_id: str) -> SendingRules:
        """What the send policy reads of a workspace (cached by ``SendPolicy.rules_of``)."""
        stored = await self.workspace_settings.get(workspace_id)
        timezone = await self.caches.timezone_of(workspace_id)
        return SendingRules(settings_from_document(stored.get("sending")), timezone)

    async def start(self) -> None:
        settings = self.settings
        await self.database.ensure_indexes()
        await self.legacy_ids.load(self.clock.now())
        await self._reseal_secrets()
        await self.arq.ping()  # fail the start now, as arq's create_pool did, if Redis is not there
        effects = self._effects = Effects(
            self.contacts,
            self.runs,
            self.messages,
            self.channel,
            self.timers,
            self.pubsub,
            ledger=self.ledger,
            policy=self.send_policy,
            tell=self._tell,
            deliveries=self.recipients,
            counters=self.counters,
        )
        deps = ActorDeps(
            contacts=self.contacts,
            flows=self.flows,
            flow_cache=self.flow_cache,
            effects=effects,
            clock=self.clock,
            timezone_of=self.caches.timezone_of,
            segment_matcher=matches,
            fields_of=self.caches.fields_of,
            extras_of=self.caches.extras_of,
            assigner=self.services.picker.for_node,
            after_turn=self.contact_services.after_turn,
            inbound_trigger=self.caches.inbound_trigger_for,
            default_channel_of=self.channel.default_channel_id,
            send_policy=self.send_policy,
            workspace_gate=self.workspace_gate,
            redirect=self._ask,
            identities_of=self.directory.identities_of,
            # Shard leases are Redis keys: the actors trust them, route by them and measure
            # idleness on the system timing, whatever ``self.timing`` is.
            timing=self.redis_timing,
        )
        # Contacts are sharded over the replicas sharing this store and Redis; a single process
        # leases every shard at start (server/actors/shards.py).
        self.actors = ShardedActors(
            deps,
            self.redis,
            self.prefix,
            settings.replica_id,
            shard_count=settings.shard_count,
            lease_ttl_seconds=settings.lease_ttl_seconds,
            idle_seconds=settings.actor_idle_seconds,
        )
        await self.actors.start()
        self._actors.bind(self.actors)
        self.workspace_gate.start()
        await self.pubsub.start()
        self._tasks.append(self.key_guard.start())
        self._tasks.append(self.socket_slots.start())
        await self.contact_services.start()
        # Contacts stored before identities get their phone indexed (once per store; batched).
        await index_contact_identities(self.database, self.identities, self.merger.merge, self.clock.now())
        await self.merger.recover()
        self.message_backfill = asyncio.create_task(
            backfill_message_contacts(self.database, self.clock.now()), name="message-contact-ids"
        )
        self._tasks.append(self.message_backfill)
        if settings.start_timer_worker:
            worker = TimerWorker(  # shares this event loop and actor system
                self.arq,
                self.timers.queue_name,
                self.actors,
                settings.timer_poll_seconds,
                batch_size=settings.timer_batch_size,
                max_in_flight=settings.timer_max_in_flight,
                claim_seconds=settings.timer_claim_seconds,
                clock=self.clock,
                timing=self.timing,
            )
            self._worker = worker
            self._tasks.append(asyncio.create_task(worker.main(), name="timer-worker"))
        self._tasks.append(asyncio.create_task(self._recover_periodically(), name="recovery"))
        self._tasks.append(self.triggers.start())

    async def _reseal_secrets(self) -> None:
        """Seal secrets stored in plaintext (before encryption) or under an older key, once per start:
        after it, a key rotated out of ``KONVO_SECRET_KEY`` is no longer needed."""
        resealed = 0
        for repository in (self.channels, self.workspace_settings, self.webhooks):
            count, _unreadable = await repository.reseal()  # unreadable ones are logged by reseal
            resealed += count
        if resealed:
            log.info("sealed %d stored secret(s) with the current key", resealed)

    async def _ask(self, key: ContactKey, event: Event) -> TurnResult:
        """Run a turn and wait for it (merges; a merged contact handing an event on)."""
        return await self._tell(key, event)

    def _tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        """Queue an event without waiting for its turn (safe from inside an actor's own turn)."""
        return self._actors.tell(key, event)

    async def recover_now(
        self, scan_contacts: bool = True, counts_window: timedelta = RECOVERY_WINDOW
    ) -> None:
        """A recovery pass; a contact scan also counts flow counters of turns committed within
        ``counts_window`` that documents still carry (``FlowCounters.recount``)."""
        assert self.actors is not None, "the runtime is not started"
        stuck = self._effects.take_stuck_outboxes() if self._effects and not scan_contacts else []
        await migrate_legacy_timers(self.redis, legacy_timer_queue(self.prefix), self.timers)
        await recover(
            self.contacts,
            self.messages,
            self.timers,
            self.actors,
            self.clock,
            inbound_grace=timedelta(seconds=self.settings.inbound_grace_seconds),
            ledger=self.ledger,
            batch_size=self.settings.recovery_batch_size,
            scan_contacts=scan_contacts,
            stuck_outboxes=stuck,
            counters=self.counters,
            counts_window=counts_window,
            gate=self.workspace_gate,
        )
        await self.contact_services.recover()
        await self.triggers.recover()
        await self.merger.recover()

    async def _recover_periodically(self) -> None:
        last_scan: float | None = None
        while True:
            try:
                lost = await self._redis_lost()  # checked first: it also sets the marker
                interval = self.settings.contact_scan_interval_seconds
                now = self.timing.monotonic()
                scan = lost or last_scan is None or now - last_scan >= interval
                started = now
                # After the first scan, carried flow counters older than the last one were seen.
                window = RECOVERY_WINDOW if last_scan is None else timedelta(seconds=started - last_scan + 60)
                await self.recover_now(scan_contacts=scan, counts_window=window)
                if scan:
                    last_scan = started
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery pass failed; will try again")
            await self.timing.sleep(self.settings.recovery_interval_seconds)

    async def _redis_lost(self) -> bool:
        """True once after Redis lost its data (a restart without persistence, FLUSHALL): the
        timers it held must be rebuilt from the contacts. A marker key set now tells next time."""
        marker = recovery_marker(self.prefix)
        if await self.redis.exists(marker):
            return False
        await self.redis.set(marker, 1)
        return True

    @property
    def timer_worker(self) -> TimerWorker | None:
        """The in-process timer worker (None when ``start_timer_worker`` is off): its counts feed /metrics."""
        return self._worker

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking timer jobs, finish in-flight turns, then close connections (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_all_and_wait(self._tasks, grace_seconds)
        self._tasks.clear()
        await self.contact_services.stop()
        if self._worker is not None and self._worker.tasks:
            await asyncio.wait(list(self._worker.tasks.values()), timeout=grace_seconds)
        if self.actors is not None:
            await self.actors.stop(grace_seconds)
        if self._effects is not None:
            await self._effects.wait_settled(grace_seconds)  # effects of committed turns cut short
        await self.ledger.drain()
        await self.counters.drain()
        await self.workspace_gate.stop()
        await self.pubsub.stop()
        await self.arq.aclose()
        await self.graph.close()
        await self.redis.aclose()
        await self.database.close()

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.database.ping(), timeout=2)
            report["store"] = "ok"
        except Exception as exc:
            report["store"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            report["redis"] = "ok"
        except Exception as exc:
            report["redis"] = f"error: {type(exc).__name__}"
        report["ok"] = report["store"] == "ok" and report["redis"] == "ok"
        return report
