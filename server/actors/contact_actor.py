"""The virtual actor of one contact: a mailbox, one event at a time, one CAS commit per turn."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bson.errors import BSONError

from server.actors import contact_commands
from server.actors.effects import Effects
from server.actors.events import (
    CONTACT_COMMANDS,
    AbsorbContact,
    Event,
    InboundMessage,
    Redeliver,
    StartFlow,
    TurnResult,
    UpdateIdentities,
)
from server.actors.flow_cache import FlowCache
from server.actors.identity_commands import note_identities
from server.actors.turn_logic import Assigner, InboundTrigger, SegmentMatcher, TurnLogic, startable
from server.clock import Clock, SystemTiming, Timing
from server.document_copy import copy_document
from server.documents import ContactDoc, as_contact
from server.errors import Conflict, InvalidInput, NotFound, Unavailable, WindowClosed, WorkspaceDisabled
from server.identity import Identities
from server.ids import ContactKey, new_id
from server.machines.flow_counts import TurnCounts
from server.machines.turn import Turn
from server.packing import pack, unpack
from server.sending.policy import Answering, SendPolicy
from server.store.contacts import ContactRepository, new_contact
from server.store.flows import FlowRepository
from server.workspace_gate import WorkspaceGate

log = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 8
# What a contact merged into another hands on to the survivor. Its own bookkeeping stays here:
# timers and statuses of what it sent, its runs, redeliveries of its outbox, the merge itself.
REDIRECTED = (InboundMessage, StartFlow, *CONTACT_COMMANDS, UpdateIdentities, AbsorbContact)
__all__ = ["REDIRECTED", "ActorDeps", "ContactActor", "event_id", "startable"]


@dataclass
class ActorDeps:
    contacts: ContactRepository
    flows: FlowRepository
    flow_cache: FlowCache
    effects: Effects
    clock: Clock
    timezone_of: Callable[[str], Awaitable[str]]
    segment_matcher: SegmentMatcher | None = None
    fields_of: Callable[[str], Awaitable[dict[str, tuple[str, list[str]]]]] | None = None
    # Template categories, field links and opt-out words of a workspace (cached by the runtime).
    extras_of: Callable[[str], Awaitable[contact_commands.TurnExtras]] | None = None
    # Picks the agent for an ``assign`` node: (agent document or None, why not).
    assigner: Assigner | None = None
    # After the commit and its effects: inbox news, external profile syncs.
    after_turn: Callable[[ContactDoc | None, ContactDoc], Awaitable[None]] | None = None
    # Inbound triggers (keywords, catch-all): (workspace, text, button) -> (flow id, trigger) or None.
    inbound_trigger: InboundTrigger | None = None
    # The workspace's default channel id now (None: the sandbox); a run started without a channel
    # of its own keeps it, so a later change of default does not move a conversation mid-way.
    default_channel_of: Callable[[str], Awaitable[str | None]] | None = None
    # Shard lease fencing: the epoch of this process's lease on the contact's shard, written into
    # the document so a replica that lost its lease can never overwrite a newer owner's commit.
    # Raises (e.g. Unavailable) when this process does not own the shard any more.
    fence_of: Callable[[ContactKey], int | None] | None = None
    # A merged contact's events go to the contact it was merged into: (survivor, event) -> its turn.
    redirect: Callable[[ContactKey, Event], Awaitable[TurnResult]] | None = None
    # What the directory claimed for a contact not stored yet: its first document starts with it.
    identities_of: Callable[[ContactKey], Awaitable[Identities]] | None = None
    # The send policy screens what each turn queued before its commit (server/sending/policy.py).
    send_policy: SendPolicy | None = None
    # Refuses (``WorkspaceDisabled``) turns while an operator has the workspace disabled (or deletes
    # it): timers are held and nothing is sent. A turn it admits, with the effects of its commit,
    # counts as the workspace's work in flight, which a deletion waits for (``server/workspace_gate.py``).
    workspace_gate: WorkspaceGate | None = None
    # Elapsed time of the actors: idleness, passivation, shard routing and lease trust. It must run
    # no slower than real time where shard leases are involved (server/clock.py).
    timing: Timing = field(default_factory=SystemTiming)
    # What a turn does with its event (the deps above are its sources); the simulator shares it.
    turns: TurnLogic = field(init=False)

    def __post_init__(self) -> None:
        self.turns = TurnLogic(self)


Envelope = tuple[Event, "asyncio.Future[TurnResult]"]


class ContactActor:
    """A contact's mailbox and cached document; a task runs its turns only while it has work.

    An idle actor is a small object holding the contact document of its last turn (saves a store
    read on the next one), packed as BSON: no task, no queue, no future. P5 of issue 8 measured
    1.0 KB per idle actor of a new contact, 0.5 KB of it the packed document, where it took 6.2 KB
    with an ``asyncio.Queue``, a task parked on it and the document as Python objects (1.3 KB;
    2.6 KB decoded from the store, with its own copy of every key). ``post``
    queues an envelope and starts the task if none runs; the task exits once the mailbox is empty.
    Deciding to exit and clearing ``task`` happen with no ``await`` in between, so a ``post`` sees
    either a running task that will take its envelope or none and starts one: turns of a contact
    never overlap and run in the order posted.
    """

    __slots__ = ("_deps", "_packed", "document", "key", "last_active", "mailbox", "task")

    def __init__(self, key: ContactKey, deps: ActorDeps) -> None:
        self.key = key
        self._deps = deps
        self.mailbox: deque[Envelope] | None = None  # only while there is work
        self.document: ContactDoc | None = None  # while turns run
        self._packed: bytes | None = None  # the document while idle
        self.last_active = deps.timing.monotonic()
        self.task: asyncio.Task[None] | None = None

    def post(self, event: Event, future: asyncio.Future[TurnResult]) -> None:
        """Queue ``event``; ``future`` gets the turn's result or its exception."""
        if self.mailbox is None:
            self.mailbox = deque()
        self.mailbox.append((event, future))
        if self.task is None:
            self.task = asyncio.create_task(self._loop(), name=f"actor:{self.key.doc_id}")

    @property
    def idle(self) -> bool:
        """No turn running or queued: the actor may be passivated (it holds nothing the store lacks)."""
        return self.task is None

    def fail_queued(self, error: Exception) -> None:
        """Answer every queued envelope with ``error``: their turns will not run (shutdown)."""
        _fail(self.mailbox, error)

    async def _loop(self) -> None:
        mailbox = self.mailbox
        assert mailbox is not None
        try:
            while mailbox:
                event, future = mailbox.popleft()
                await self._run(event, future)
        finally:
            # No await between the empty check above and here: a later post starts a new task.
            self.task = None
            self.mailbox = None
            self.last_active = self._deps.timing.monotonic()
            self._pack()
            _fail(mailbox, Unavailable("the server stopped before this turn ran; retry"))  # if cancelled

    def _pack(self) -> None:
        """Idle: keep the document as BSON (a third of its size as objects), unpacked by ``_load``."""
        if self.document is None:
            return
        try:
            self._packed = pack(self.document)
        except (BSONError, TypeError, ValueError, OverflowError):
            self._packed = None  # not BSON after all: read it from the store next time
        self.document = None

    async def _run(self, event: Event, future: asyncio.Future[TurnResult]) -> None:
        try:
            result = await self._turn(event)
        except asyncio.CancelledError:
            self.document = self._packed = None
            if not future.done():
                future.set_exception(Unavailable("the server stopped during this turn; retry"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            if not isinstance(exc, InvalidInput | NotFound | Conflict | WindowClosed | WorkspaceDisabled):
                log.exception("turn of %s failed on %s", self.key.doc_id, type(event).__name__)
            self.document = self._packed = None  # reload from the store next time
        else:
            if not future.done():
                future.set_result(result)

    async def _load(self, *, lazily: bool = True) -> ContactDoc:
        """The contact as of its last commit; a stored outbox is delivered first (a crash may have cut
        it short). ``lazily``: a turn follows, whose commit drops what went (``deliver_outbox``)."""
        if self.document is None and self._packed is not None:
            self.document = as_contact(unpack(self._packed))
            self._packed = None
        if self.document is None:
            found = await self._deps.contacts.load(self.key)
            if found is None:
                found = new_contact(self.key, self._deps.clock.now())
                if self._deps.identities_of is not None:  # whoever named it (API, webhook) claimed these
                    note_identities(found, await self._deps.identities_of(self.key))
            elif found.get("outbox"):
                await self._deps.effects.deliver_outbox(found, lazily=lazily)
            self.document = found
        return self.document

    async def _turn(self, event: Event) -> TurnResult:
        gate = self._deps.workspace_gate
        if gate is None:
            return await self._admitted_turn(event)
        async with gate.acting(self.key.workspace_id):
            return await self._admitted_turn(event)

    async def _settle(self, work: Awaitable[None]) -> None:
        """What follows a commit runs to its end (``Effects.settle``), still counted as the
        workspace's work in flight when the turn that started it is cancelled."""
        gate = self._deps.workspace_gate
        carried = gate.carry(self.key.workspace_id) if gate is not None else None
        await self._deps.effects.settle(work, carried.release if carried is not None else None)

    async def _admitted_turn(self, event: Event) -> TurnResult:
        if isinstance(event, Redeliver):  # recovery: what it finds delivered leaves the store too
            document = await self._load(lazily=False)
            await self._deps.effects.deliver_outbox(document)
            return TurnResult(document, changed=False)
        for _ in range(MAX_CAS_ATTEMPTS):
            before = await self._load()
            if event.event_id in before.get("applied_events", []):
                if isinstance(event, InboundMessage):
                    # Redelivered (recovery found its pending mark): the turn that applied it may
                    # have been cut after its commit, so what follows a commit is done again.
                    await self._settle(self._deps.effects.redo_after_commit(before, [event.event_id]))
                return TurnResult(before, duplicate=True, changed=False)
            if before.get("erased_at") is not None:  # a tombstone: late events resurrect nobody
                log.info("%s for erased contact %s ignored", type(event).__name__, self.key.doc_id)
                return TurnResult(before, changed=False)
            survivor = before.get("merged_into")
            if survivor and isinstance(event, REDIRECTED) and self._deps.redirect is not None:
                # Another turn's await: the survivor never waits on this contact (merges go one way).
                return await self._deps.redirect(ContactKey.from_doc_id(survivor), event)
            working = copy_document(before)
            counts = TurnCounts()
            turn = await self._deps.turns.begin(working, self._deps.clock.now(), observer=counts)
            result = await self._deps.turns.apply(self.key, turn, event)
            if not result.changed:
                return result
            await self._screen_sends(turn, before, event)
            self._deps.turns.finish(before, turn, event)
            counts.pend(working)  # the commit carries its counters: see server/actors/flow_counters.py
            if self._deps.fence_of is not None:
                epoch = self._deps.fence_of(self.key)
                if epoch is not None:
                    working["lease_epoch"] = epoch
            expected = before["version"]
            if await self._deps.contacts.compare_and_set(working, expected):
                self.document = working
                inbound = [event.event_id] if isinstance(event, InboundMessage) else []
                await self._settle(self._after_commit(before, working, turn.changed_runs, inbound))
                result.contact = working
                return result
            self.document = None  # another writer won the race: reload and redo the turn
        raise Conflict(f"contact {self.key.doc_id} kept changing under us; try again")

    async def _after_commit(
        self, before: ContactDoc, after: ContactDoc, changed_runs: set[str], inbound: list[str]
    ) -> None:
        await self._deps.effects.after_commit(before, after, changed_runs, inbound)
        if self._deps.after_turn is not None:
            await self._deps.after_turn(before, after)

    async def _screen_sends(self, turn: Turn, before: ContactDoc, event: Event) -> None:
        """Before the commit: what this turn queued passes the send policy (holds, stamps, typing)."""
        policy = self._deps.send_policy
        if policy is None or not turn.contact.get("outbox"):
            return
        answering = None
        if isinstance(event, InboundMessage):
            answering = Answering(event.event_id, event.provider_id, event.channel, event.channel_id)
        queued = {m["id"] for m in before.get("outbox", [])}

        async def transactional(message: dict[str, Any]) -> bool:
            run = next((r for r in turn.contact.get("runs", []) if r["id"] == message.get("run_id")), None)
            if run is None:
                return False
            compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
            return compiled.definition.settings.transactional

        await policy.screen_turn(turn, queued, answering, transactional)


def _fail(mailbox: deque[Envelope] | None, error: Exception) -> None:
    while mailbox:
        _, future = mailbox.popleft()
        if not future.done():
            future.set_exception(error)


def event_id() -> str:
    return new_id("evt")
