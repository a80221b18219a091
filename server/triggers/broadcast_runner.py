"""The broadcast runner: one task per server process that drives due broadcasts to the end.

A broadcast is driven by one process at a time: the runner takes a lease on its document and
renews it while it works; a crashed process's lease expires and another process takes over.
Each recipient is started with the event id ``bc:{broadcast}:{phone}``, so when a restart
re-sends a recipient whose turn committed but whose state was not yet written, the contact
actor's ``applied_events`` drops it: nobody is messaged twice. Recipients' outcomes are written
in bulk, each once (``RecipientRepository``); the throughput per number is the channel's
limiter's business, not the runner's. The messaging limit is the business portfolio's: every
number of it counts against one budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from server.actors.events import StartFlow
from server.cancellation import cancel_all_and_wait, cancel_and_wait
from server.channels.whatsapp.limiter import clamp_rate
from server.clock import Clock, Timing
from server.errors import InvalidInput, KonvoError, NotFound
from server.ids import ContactKey, new_id
from server.pubsub import RedisPubSub
from server.segments import matches, to_mongo_filter
from server.services import ActorsHandle
from server.store.broadcasts import (
    AudienceRepository,
    BroadcastRepository,
    MessagingLimitRepository,
    RecipientRepository,
)
from server.triggers.broadcast_rules import CONTACT_WITH_AGENT, Judge, Plan, tier_limit
from server.triggers.broadcasts import (
    DAY,
    BroadcastPlanServices,
    SendingChannelServices,
    broadcast_topic,
    make_plan,
    messaging_portfolio,
    sending_channel,
)
from server.window import window_open
from server.workspace_caches import WorkspaceCaches
from server.workspace_gate import WorkspaceGate
from server.workspace_inflight import Ticket

log = logging.getLogger(__name__)

FREEZE_BATCH = 1000
# Set once the audience is frozen (``broadcast_audience``). Not the older versions' ``frozen``: an
# older replica that takes a broadcast over during a rolling deploy freezes it again its own way
# (queued recipients, keeping every outcome already stored) instead of finding nobody queued.
FROZEN = "audience_frozen"
PUBLISH_EVERY_SECONDS = 0.5
FLUSH_EVERY_SECONDS = 0.5  # recipients' states are written in bulk this often while sending
PASSIVATE_ABOVE = 20_000  # actors in memory: beyond this, a broadcast passivates idle ones
# Recipients in flight per second of the number's rate: a start waits for its turn, its send slot and
# Meta's answer, so a fixed count capped a 1,000/s number far below its rate (issue 19) and would
# only pile up turns waiting for slots on an 80/s one.
IN_FLIGHT_SECONDS = 0.5
MIN_CONCURRENCY, MAX_CONCURRENCY = 16, 1000
SANDBOX_CONCURRENCY = 64


class BroadcastRunnerServices(BroadcastPlanServices, SendingChannelServices, Protocol):
    """What the broadcast runner uses to drive broadcasts to the end."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def audience(self) -> AudienceRepository: ...

    @property
    def broadcasts(self) -> BroadcastRepository: ...

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def limits(self) -> MessagingLimitRepository: ...

    @property
    def pubsub(self) -> RedisPubSub: ...

    @property
    def recipients(self) -> RecipientRepository: ...

    @property
    def timing(self) -> Timing: ...

    @property
    def workspace_gate(self) -> WorkspaceGate: ...


@dataclass
class PassOutcome:
    deferred: int = 0  # waiting for messaging-limit capacity
    stopped: bool = False  # paused, cancelled or lease lost


class BroadcastRunner:
    def __init__(
        self,
        services: BroadcastRunnerServices,
        wake: asyncio.Event | None = None,
        poll_seconds: float = 0.5,
        lease_seconds: float = 15.0,
        batch_size: int = 500,
        concurrency: int | None = None,
    ) -> None:
        self.services = services
        self.owner = new_id("proc")
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        self.concurrency = concurrency  # None: from the sending number's throughput (``in_flight``)
        self._wake = wake or asyncio.Event()  # set by ``Services.wake_broadcasts``
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._workspace_of: dict[str, str] = {}  # of each broadcast driven here
        self._published: dict[str, float] = {}

    def stop_workspace(self, workspace_id: str) -> None:
        """The workspace is being deleted: its broadcasts driven here stop now (each counts as the
        workspace's work in flight until its driver has ended, which the deletion waits for)."""
        for broadcast_id, owner in list(self._workspace_of.items()):
            task = self._driving.get(broadcast_id)
            if owner == workspace_id and task is not None:
                task.cancel()

    def nudge(self) -> None:
        """Look for due broadcasts now rather than at the next poll (one was created or resumed)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self._claim_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("looking for due broadcasts failed; will try again")
                await self.services.timing.wait(self._wake, self.poll_seconds)
        finally:
            await cancel_all_and_wait(self._driving.values())

    async def _claim_due(self) -> None:
        repo = self.services.broadcasts
        now = self.services.clock.now()
        for found in await repo.claimable(now, self.owner):
            if found["_id"] in self._driving:
                continue
            # Held while an operator has its workspace disabled; driven, it is work in flight.
            ticket = await self.services.workspace_gate.admit(found["workspace_id"])
            if ticket is None:
                continue
            try:
                claimed = await repo.claim(found["_id"], self.owner, now, now + self.lease)
            except BaseException:
                ticket.release()
                raise
            if claimed is None:
                ticket.release()
                continue
            task = asyncio.create_task(self._drive(claimed), name=f"broadcast:{found['_id']}")
            task.add_done_callback(_releasing(ticket))  # also if it never started
            self._driving[found["_id"]] = task
            self._workspace_of[found["_id"]] = found["workspace_id"]

    async def _drive(self, broadcast: dict[str, Any]) -> None:
        broadcast_id = broadcast["_id"]
        me = asyncio.current_task()
        assert me is not None
        renewer = asyncio.create_task(self._renew(broadcast_id, me))
        try:
            await self._work(broadcast)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast %s stopped on an error; it is retried at the next poll", broadcast_id)
        finally:
            await cancel_and_wait(renewer)
            with contextlib.suppress(Exception):
                await self.services.broadcasts.release(broadcast_id, self.owner)
            self._driving.pop(broadcast_id, None)
            self._workspace_of.pop(broadcast_id, None)
            with contextlib.suppress(Exception):
                await self._publish(broadcast, force=True)

    async def _renew(self, broadcast_id: str, driver: asyncio.Task[None]) -> None:
        every = max(self.lease.total_seconds() / 3, 0.05)
        while True:
            await self.services.timing.sleep(every)
            until = self.services.clock.now() + self.lease
            try:
                renewed = await self.services.broadcasts.renew(broadcast_id, self.owner, until)
            except Exception as exc:  # a store blip: try again next time (the lease outlives 2 misses)
                log.warning("renewing the lease on broadcast %s failed: %s", broadcast_id, exc)
                continue
            if not renewed:
                log.warning("lost the lease on broadcast %s; another process drives it", broadcast_id)
                driver.cancel()
                return

    async def _work(self, broadcast: dict[str, Any]) -> None:
        services, repo = self.services, self.services.broadcasts
        broadcast_id = broadcast["_id"]
        if broadcast["status"] == "scheduled":
            changes = {"status": "running", "started_at": services.clock.now()}
            started = await repo.transition(broadcast["workspace_id"], broadcast_id, ["scheduled"], changes)
            if started is None:
                return
            broadcast = started
        try:
            plan = await make_plan(services, broadcast)
        except KonvoError as exc:
            failed = {"status": "failed", "error": exc.message, "finished_at": services.clock.now()}
            await repo.update(broadcast_id, failed, status="running")
            return
        if not (broadcast.get(FROZEN) or broadcast.get("frozen")):  # "frozen": by an older version
            await self._freeze(broadcast)
        while True:
            outcome = await self._pass(broadcast, plan)
            if outcome.stopped:
                return
            if outcome.deferred:
                if not await self._wait_for_capacity(broadcast):
                    return
                continue
            if await services.recipients.any_queued(broadcast_id):
                await services.timing.sleep(self.poll_seconds)  # some starts failed for a passing reason
                continue
            done = {
                "status": "completed",
                "finished_at": services.clock.now(),
                "waiting_for_capacity_until": None,
            }
            await repo.update(broadcast_id, done, status="running")
            return

    async def _freeze(self, broadcast: dict[str, Any]) -> None:
        """Materialise the audience once; redoing it after a crash adds only who is missing."""
        services = self.services
        broadcast_id, workspace_id = broadcast["_id"], broadcast["workspace_id"]
        now = services.clock.now()
        batch: list[dict[str, Any]] = []
        zone = await services.caches.timezone_of(workspace_id)
        async for contact in services.audience.members(
            workspace_id, to_mongo_filter(broadcast["segment"], now, zone)
        ):
            batch.append(
                {
                    # contacts stored before identities: the id a freeze of that version gave them
                    "_id": f"{broadcast_id}:{ContactKey.of_contact(contact).local_id}",
                    "broadcast_id": broadcast_id,
                    "workspace_id": workspace_id,
                    "contact_id": contact["_id"],
                    "phone": contact.get("phone"),
                    "state": "queued",
                    "reason": None,
                    "run_id": None,
                    "at": None,
                }
            )
            if len(batch) >= FREEZE_BATCH:
                await services.recipients.add_many(batch)
                batch = []
        await services.recipients.add_many(batch)
        total = await services.recipients.count(broadcast_id)
        await services.broadcasts.update(broadcast_id, {FROZEN: True, "total": total, "frozen_at": now})
        broadcast.update({FROZEN: True, "total": total})
        await self._publish(broadcast, force=True)

    async def _pass(self, broadcast: dict[str, Any], plan: Plan) -> PassOutcome:
        """Start every queued recipient that may go now, in ``_id`` order, ``concurrency`` at a time."""
        services = self.services
        broadcast_id, workspace_id = broadcast["_id"], broadcast["workspace_id"]
        outcome = PassOutcome()
        portfolio = await messaging_portfolio(services, workspace_id, broadcast)
        limit = tier_limit(await services.limits.tier(workspace_id, portfolio))
        timezone = await services.caches.timezone_of(workspace_id)
        fields = await services.caches.fields_of(workspace_id)
        gate = asyncio.Semaphore(await self.in_flight(broadcast))
        inflight: set[asyncio.Task[None]] = set()
        finished: list[tuple[dict[str, Any], dict[str, Any]]] = []
        flusher = asyncio.create_task(self._flush_every(broadcast, finished))
        after = ""
        try:
            while True:
                current = await services.broadcasts.find(broadcast_id)
                if current is None or current["status"] != "running":
                    outcome.stopped = True
                    break
                if not await services.workspace_gate.may_act(workspace_id):
                    outcome.stopped = True  # the workspace was disabled: resumed once enabled
                    break
                batch = await services.recipients.queued(broadcast_id, after, self.batch_size)
                if not batch:
                    break
                after = batch[-1]["_id"]
                starts = await self._decide(
                    broadcast, plan, batch, limit, portfolio, timezone, fields, outcome
                )
                for recipient in starts:
                    await gate.acquire()
                    task = asyncio.create_task(self._start_one(broadcast, plan, recipient, finished, gate))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                self._relieve_memory()
            await asyncio.gather(*inflight)
        finally:
            await cancel_all_and_wait([flusher])
            await cancel_all_and_wait(inflight)
            await self._flush(finished)
        return outcome

    async def in_flight(self, broadcast: dict[str, Any]) -> int:
        """Recipients started at once: follows the throughput of the number the broadcast sends
        through (the sandbox has no limiter)."""
        if self.concurrency is not None:
            return self.concurrency
        channel = await sending_channel(self.services, broadcast["workspace_id"], broadcast)
        if channel is None:
            return SANDBOX_CONCURRENCY
        rate = clamp_rate(channel.get("throughput_per_second"))
        return max(MIN_CONCURRENCY, min(MAX_CONCURRENCY, round(rate * IN_FLIGHT_SECONDS)))

    async def _decide(
        self,
        broadcast: dict[str, Any],
        plan: Plan,
        batch: list[dict[str, Any]],
        limit: int | None,
        portfolio: str | None,
        timezone: str,
        fields: dict[str, tuple[str, list[str]]],
        outcome: PassOutcome,
    ) -> list[dict[str, Any]]:
        """Skip who must be skipped (recorded), keep who waits for capacity queued, return the rest."""
        services = self.services
        workspace_id = broadcast["workspace_id"]
        contacts = await services.audience.load_many([r["contact_id"] for r in batch])
        now = services.clock.now()
        judge = Judge(plan, now, timezone, matches, fields)
        skips: list[tuple[dict[str, Any], dict[str, Any]]] = []
        starts: list[dict[str, Any]] = []
        closed: list[str] = []
        for recipient in batch:
            contact = contacts.get(recipient["contact_id"])
            reason = judge.skip_reason(contact)
            if reason is not None:
                skips.append((recipient, {"state": "skipped", "reason": reason, "at": now}))
                continue
            assert contact is not None
            starts.append(recipient)
            if not window_open(contact.get("last_inbound_at"), now):
                closed.append(_reached(recipient))
        await services.recipients.set_states(skips, ["queued"])
        if not closed:
            return starts
        since = now - DAY
        limits = services.limits
        already = await limits.reached_since(workspace_id, closed, since, portfolio)
        free = None if limit is None else limit - await limits.used_since(workspace_id, since, portfolio)
        allowed: set[str] = set()
        for phone in closed:
            if phone in already:
                allowed.add(phone)
            elif free is None or free > 0:
                free = None if free is None else free - 1
                allowed.add(phone)
        fresh = [p for p in allowed if p not in already]
        await limits.record(workspace_id, fresh, now, portfolio)
        waiting = set(closed) - allowed
        outcome.deferred += len(waiting)
        return [r for r in starts if _reached(r) not in waiting]

    async def _start_one(
        self,
        broadcast: dict[str, Any],
        plan: Plan,
        recipient: dict[str, Any],
        finished: list[tuple[dict[str, Any], dict[str, Any]]],
        gate: asyncio.Semaphore,
    ) -> None:
        services = self.services
        broadcast_id = broadcast["_id"]
        key = ContactKey.referenced_by(recipient)
        event = StartFlow(
            f"bc:{broadcast_id}:{key.local_id}",
            plan.flow_id,
            trigger={"broadcast_id": broadcast_id},
            source="broadcast",
            channel_id=broadcast.get("channel_id"),
        )
        try:
            result = await services.actors.ask(key, event)
        except (InvalidInput, NotFound) as exc:
            failed = {"state": "failed", "reason": exc.message, "at": services.clock.now()}
            finished.append((recipient, failed))
            return
        except KonvoError as exc:  # contended or shutting down: stays queued for the next pass
            log.info("broadcast %s: %s stays queued: %s", broadcast_id, key.doc_id, exc.message)
            return
        finally:
            gate.release()
        run = result.run or next(
            (
                r
                for r in result.contact.get("runs", [])
                if (r.get("trigger") or {}).get("broadcast_id") == broadcast_id
            ),
            None,
        )
        if run is not None and run.get("end_reason") == CONTACT_WITH_AGENT:
            # Assigned after this batch was judged: the actor skipped the run; so is the recipient.
            state: dict[str, Any] = {"state": "skipped", "reason": CONTACT_WITH_AGENT, "run_id": run["id"]}
        else:
            state = {"state": "started", "run_id": run and run["id"]}
        finished.append((recipient, {**state, "at": services.clock.now()}))

    async def _flush(self, finished: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Write the states of recipients started since the last flush, in one bulk write."""
        if not finished:
            return
        updates = finished[:]
        del finished[:]
        try:
            await self.services.recipients.set_states(updates, ["queued", "cancelled"])
        except BaseException:
            finished[:0] = updates  # written by the next flush (or redone, harmlessly, after a restart)
            raise

    async def _flush_every(
        self, broadcast: dict[str, Any], finished: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> None:
        while True:
            await self.services.timing.sleep(FLUSH_EVERY_SECONDS)
            await self._flush(finished)
            await self._publish(broadcast)

    async def _wait_for_capacity(self, broadcast: dict[str, Any]) -> bool:
        """Sleep until the messaging limit frees a slot; False when paused or cancelled meanwhile."""
        services = self.services
        broadcast_id, workspace_id = broadcast["_id"], broadcast["workspace_id"]
        limits = services.limits
        while True:
            now = services.clock.now()
            portfolio = await messaging_portfolio(services, workspace_id, broadcast)
            limit = tier_limit(await limits.tier(workspace_id, portfolio))
            if limit is None or await limits.used_since(workspace_id, now - DAY, portfolio) < limit:
                await services.broadcasts.update(broadcast_id, {"waiting_for_capacity_until": None})
                return True
            oldest = await limits.oldest_since(workspace_id, now - DAY, portfolio)
            until = (oldest or now) + DAY
            await services.broadcasts.update(broadcast_id, {"waiting_for_capacity_until": until})
            await self._publish(broadcast)
            current = await services.broadcasts.find(broadcast_id)
            if current is None or current["status"] != "running":
                return False
            await services.timing.sleep(self.poll_seconds)

    def _relieve_memory(self) -> None:
        """A large broadcast activates an actor per recipient: passivate the idle ones early."""
        actors = self.services.actors.system
        if actors is not None and actors.active_count > PASSIVATE_ABOVE:
            actors.passivate_idle(1.0)

    async def _publish(self, broadcast: dict[str, Any], force: bool = False) -> None:
        """Tell ``broadcastProgress`` subscribers to look again (throttled)."""
        broadcast_id = broadcast["_id"]
        moment = self.services.timing.monotonic()
        if not force and moment - self._published.get(broadcast_id, 0.0) < PUBLISH_EVERY_SECONDS:
            return
        self._published[broadcast_id] = moment
        topic = broadcast_topic(broadcast["workspace_id"], broadcast_id)
        await self.services.pubsub.publish(topic, {"id": broadcast_id})


def _releasing(ticket: Ticket) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback ending the workspace's count of the broadcast's drive."""
    return lambda _: ticket.release()


def _reached(recipient: dict[str, Any]) -> str:
    """Who counts against the messaging limit: a unique user, by phone (else the contact)."""
    return str(recipient.get("phone") or recipient["contact_id"])
