"""The virtual actor of one contact: a mailbox, one event at a time, one CAS commit per turn."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson.errors import BSONError

from server.actors import contact_commands
from server.actors.effects import Effects
from server.actors.events import (
    CONTACT_COMMANDS,
    DeferSend,
    EndFlowRuns,
    Event,
    InboundMessage,
    MessageStatus,
    Redeliver,
    StartFlow,
    StopRun,
    TimerFired,
    TurnResult,
)
from server.actors.flow_cache import FlowCache
from server.clock import Clock, as_utc
from server.errors import Conflict, InvalidInput, NotFound, Unavailable, WindowClosed
from server.ids import ContactKey, new_id
from server.machines import contact_state, runner, statuses
from server.machines.documents import TimerDoc
from server.packing import pack, unpack
from server.sending import holds
from server.sending.policy import Answering, SendPolicy
from server.store.contacts import ContactRepository, new_contact
from server.store.flows import FlowRepository

log = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 8
APPLIED_EVENTS_KEPT = 200
ENDED_RUNS_KEPT = 20

SegmentMatcher = Callable[[dict[str, Any], dict[str, Any], datetime], bool]


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
    assigner: (
        Callable[[str, runner.AssignRequest], Awaitable[tuple[dict[str, Any] | None, str | None]]] | None
    ) = None
    # After the commit and its effects: inbox news, external profile syncs.
    after_turn: Callable[[dict[str, Any] | None, dict[str, Any]], Awaitable[None]] | None = None
    # Inbound triggers (keywords, catch-all): (workspace, text, button) -> (flow id, trigger) or None.
    inbound_trigger: (
        Callable[[str, str | None, str | None], Awaitable[tuple[str, dict[str, Any]] | None]] | None
    ) = None
    # The workspace's default channel id now (None: the sandbox); a run started without a channel
    # of its own keeps it, so a later change of default does not move a conversation mid-way.
    default_channel_of: Callable[[str], Awaitable[str | None]] | None = None
    # Shard lease fencing: the epoch of this process's lease on the contact's shard, written into
    # the document so a replica that lost its lease can never overwrite a newer owner's commit.
    # Raises (e.g. Unavailable) when this process does not own the shard any more.
    fence_of: Callable[[ContactKey], int | None] | None = None
    # The send policy screens what each turn queued before its commit (server/sending/policy.py).
    send_policy: SendPolicy | None = None


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
        self.document: dict[str, Any] | None = None  # while turns run
        self._packed: bytes | None = None  # the document while idle
        self.last_active = time.monotonic()
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
            self.last_active = time.monotonic()
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
            if not isinstance(exc, InvalidInput | NotFound | Conflict | WindowClosed):
                log.exception("turn of %s failed on %s", self.key.doc_id, type(event).__name__)
            self.document = self._packed = None  # reload from the store next time
        else:
            if not future.done():
                future.set_result(result)

    async def _load(self) -> dict[str, Any]:
        if self.document is None and self._packed is not None:
            self.document = unpack(self._packed)
            self._packed = None
        if self.document is None:
            found = await self._deps.contacts.load(self.key)
            self.document = found if found is not None else new_contact(self.key, self._deps.clock.now())
            if found is not None and found.get("outbox"):
                await self._deps.effects.deliver_outbox(self.document)
        return self.document

    async def _turn(self, event: Event) -> TurnResult:
        if isinstance(event, Redeliver):
            document = await self._load()
            await self._deps.effects.deliver_outbox(document)
            return TurnResult(document, changed=False)
        for _ in range(MAX_CAS_ATTEMPTS):
            before = await self._load()
            if event.event_id in before.get("applied_events", []):
                if isinstance(event, InboundMessage):
                    # Redelivered (recovery found its pending mark): the turn that applied it may
                    # have been cut after its commit, so what follows a commit is done again.
                    await self._deps.effects.settle(
                        self._deps.effects.redo_after_commit(before, [event.event_id])
                    )
                return TurnResult(before, duplicate=True, changed=False)
            working = copy.deepcopy(before)
            turn = runner.Turn(
                contact=working,
                now=self._deps.clock.now(),
                timezone=await self._deps.timezone_of(self.key.workspace_id),
                segment_matcher=self._deps.segment_matcher,
                fields=await self._deps.fields_of(self.key.workspace_id) if self._deps.fields_of else {},
            )
            (await self._extras()).fill(turn)
            result = await self._apply(turn, event)
            if not result.changed:
                return result
            await self._screen_sends(turn, before, event)
            contact_state.note_outbound(before, working, turn.now)
            self._finish(turn, event)
            if self._deps.fence_of is not None:
                epoch = self._deps.fence_of(self.key)
                if epoch is not None:
                    working["lease_epoch"] = epoch
            expected = before["version"]
            if await self._deps.contacts.compare_and_set(working, expected):
                self.document = working
                inbound = [event.event_id] if isinstance(event, InboundMessage) else []
                await self._deps.effects.settle(
                    self._after_commit(before, working, turn.changed_runs, inbound)
                )
                result.contact = working
                return result
            self.document = None  # another writer won the race: reload and redo the turn
        raise Conflict(f"contact {self.key.phone} kept changing under us; try again")

    async def _after_commit(
        self, before: dict[str, Any], after: dict[str, Any], changed_runs: set[str], inbound: list[str]
    ) -> None:
        await self._deps.effects.after_commit(before, after, changed_runs, inbound)
        if self._deps.after_turn is not None:
            await self._deps.after_turn(before, after)

    def _finish(self, turn: runner.Turn, event: Event) -> None:
        contact = turn.contact
        contact["version"] = contact["version"] + 1
        contact["updated_at"] = turn.now
        applied = contact.setdefault("applied_events", [])
        applied.append(event.event_id)
        del applied[:-APPLIED_EVENTS_KEPT]
        ended = [r for r in contact.get("runs", []) if r["status"] not in runner.ACTIVE]
        if len(ended) > ENDED_RUNS_KEPT:
            drop = {r["id"] for r in ended[: len(ended) - ENDED_RUNS_KEPT]}
            contact["runs"] = [r for r in contact["runs"] if r["id"] not in drop]

    async def _apply(self, turn: runner.Turn, event: Event) -> TurnResult:
        if isinstance(event, StartFlow):
            run = await self._start_flow(
                turn,
                event.flow_id,
                event.trigger,
                by_name=False,
                source=event.source,
                channel_id=event.channel_id,
            )
            await self._follow_connects(turn)
            return TurnResult(turn.contact, run=run)
        if isinstance(event, InboundMessage):
            if not event.moves_runs:
                return await self._inbound_noted(turn, event)
            return await self._inbound(turn, event)
        if isinstance(event, MessageStatus):
            return await self._message_status(turn, event)
        if isinstance(event, CONTACT_COMMANDS):
            return contact_commands.apply_command(turn, event)
        if isinstance(event, TimerFired):
            return await self._timer(turn, event)
        if isinstance(event, StopRun):
            stopped = next((r for r in turn.contact.get("runs", []) if r["id"] == event.run_id), None)
            if stopped is None:
                raise NotFound(f"run {event.run_id} not found")
            runner.end_run(turn, stopped, "cancelled", event.reason)
            return TurnResult(turn.contact, run=stopped)
        if isinstance(event, DeferSend):
            return self._defer_send(turn, event)
        if isinstance(event, EndFlowRuns):
            ended = [
                run
                for run in turn.contact.get("runs", [])
                if run["flow_id"] == event.flow_id
                and run["version"] < event.below_version
                and run["status"] in runner.ACTIVE
            ]
            for run in ended:
                runner.end_run(turn, run, "cancelled", event.reason)
            return TurnResult(turn.contact, changed=bool(ended))
        raise InvalidInput(f"unknown event {type(event).__name__}")

    async def _start_flow(
        self,
        turn: runner.Turn,
        flow_ref: str,
        trigger: dict[str, Any],
        by_name: bool,
        source: str,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """Start a run of the flow's active version (``source``: api, webhook, broadcast, keyword,
        connect). While an agent owns the conversation the run is recorded as skipped with
        ``CONTACT_WITH_AGENT``, unless the flow runs while assigned or another run of this very
        conversation connects to it.

        The run's channel: ``channel_id`` (the caller's choice, the number the customer wrote to,
        or the connecting run's), else the flow's own, else the workspace's default now."""
        workspace_id = self.key.workspace_id
        flows = self._deps.flows
        named = await flows.get_by_name(workspace_id, flow_ref) if by_name else None
        flow = named or await flows.get_recent(workspace_id, flow_ref)
        if flow is None:
            raise NotFound(f"flow {flow_ref!r} not found")
        if flow.get("status") != "active" or not flow.get("active_version"):
            raise InvalidInput(
                f"flow {flow['name']!r} is {flow.get('status')}: only an active (published) flow starts"
            )
        compiled = await self._deps.flow_cache.get(flow["_id"], flow["active_version"])
        channel_id = channel_id or flow.get("channel_id")
        if channel_id is None and self._deps.default_channel_of is not None:
            channel_id = await self._deps.default_channel_of(workspace_id)
        version = flow["active_version"]
        agent_id = turn.contact.get("assigned_agent")
        if agent_id and source != "connect" and not compiled.definition.settings.runs_while_assigned:
            run = runner.new_run(turn, compiled, flow["_id"], version, trigger, channel_id=channel_id)
            runner.skip_run(turn, run, agent_id)
            return run
        if compiled.definition.settings.supersede:
            for other in turn.contact.get("runs", []):
                if other["status"] in runner.ACTIVE:
                    runner.end_run(turn, other, "cancelled", "superseded")
        run = runner.new_run(turn, compiled, flow["_id"], version, trigger, channel_id=channel_id)
        runner.start(turn, compiled, run)
        return run

    async def _extras(self) -> contact_commands.TurnExtras:
        if self._deps.extras_of is None:
            return contact_commands.TurnExtras()
        return await self._deps.extras_of(self.key.workspace_id)

    async def _follow_assigns(self, turn: runner.Turn) -> None:
        """Pick agents for ``assign`` nodes reached in this turn and resume their runs."""
        while turn.assigns:  # bounded: each assign node is entered at most once per turn (spin guard)
            request = turn.assigns.pop(0)
            run = next(r for r in turn.contact["runs"] if r["id"] == request.run_id)
            compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
            agent: dict[str, Any] | None = None
            why: str | None = "assignment is not configured in this process"
            if self._deps.assigner is not None:
                agent, why = await self._deps.assigner(self.key.workspace_id, request)
            runner.finish_assign(turn, compiled, request, agent, why)

    async def _follow_connects(self, turn: runner.Turn) -> None:
        """Finish what nodes asked of the actor: agents to pick, then flows to connect to.

        Bounded without a depth limit: a flow's start node entered twice in one turn is a spin
        that the runner stops, so a chain of connections ends after at most one run per flow.
        """
        while True:
            await self._follow_assigns(turn)
            if not turn.connects:
                return
            request = turn.connects.pop(0)
            source = next(r for r in turn.contact["runs"] if r["id"] == request.from_run)
            try:  # the conversation goes on with the number it was on
                await self._start_flow(
                    turn,
                    request.flow,
                    request.trigger,
                    by_name=True,
                    source="connect",
                    channel_id=source.get("channel_id"),
                )
            except (NotFound, InvalidInput) as exc:
                source["end_reason"] = f"CONNECT_FAILED: {exc.message}"
                turn.changed_runs.add(source["id"])

    async def _inbound(self, turn: runner.Turn, event: InboundMessage) -> TurnResult:
        contact = turn.contact
        contact["last_inbound_at"] = event.at
        _note_channel(turn, runner.waiting_for_reply(contact), event)
        if event.name and not contact.get("name"):
            contact["name"] = event.name
        screened = contact_commands.screen_inbound(turn, event, await self._extras())
        if screened == "assigned":
            return await self._inbound_while_assigned(turn, event)
        if screened is not None:
            return TurnResult(contact)  # an opt-out keyword
        run = runner.waiting_for_reply(contact)
        if run is not None:
            compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
            runner.deliver_reply(turn, compiled, run, event.text, event.button_id)
            await self._follow_connects(turn)
        else:
            run = await self._start_from_inbound_trigger(turn, event)
        return TurnResult(contact, run=run)

    async def _inbound_while_assigned(self, turn: runner.Turn, event: InboundMessage) -> TurnResult:
        """A human owns the conversation: the message is theirs. A waiting run's no-reply time
        starts again, and a keyword trigger is recorded as skipped (``CONTACT_WITH_AGENT``) or,
        for a flow that runs while assigned, started; a catch-all trigger does nothing."""
        waiting = runner.waiting_for_reply(turn.contact)
        if waiting is not None:
            compiled = await self._deps.flow_cache.get(waiting["flow_id"], waiting["version"])
            runner.customer_wrote_to_agent(turn, compiled, waiting)
        run = await self._start_from_inbound_trigger(turn, event, keywords_only=True)
        return TurnResult(turn.contact, run=run or waiting)

    async def _start_from_inbound_trigger(
        self, turn: runner.Turn, event: InboundMessage, keywords_only: bool = False
    ) -> dict[str, Any] | None:
        """No run waits for this message: a keyword or catch-all trigger may start a flow, same turn."""
        if self._deps.inbound_trigger is None:
            return None
        found = await self._deps.inbound_trigger(self.key.workspace_id, event.text, event.button_id)
        if found is None:
            return None
        flow_id, trigger = found
        if keywords_only and "keyword" not in trigger:
            return None
        try:  # the number the customer wrote to answers them, whatever the flow's own channel
            run = await self._start_flow(
                turn, flow_id, trigger, by_name=False, source="keyword", channel_id=event.channel_id
            )
        except (NotFound, InvalidInput) as exc:  # the trigger's flow is archived or gone
            log.warning("inbound trigger %s not started: %s", trigger.get("inbound_trigger"), exc.message)
            return None
        await self._follow_connects(turn)
        return run

    async def _inbound_noted(self, turn: runner.Turn, event: InboundMessage) -> TurnResult:
        """Media, location, reactions...: they open the 24-hour window but choose no path.

        The customer is there, though: a run waiting for a reply records the message and its
        no-reply time starts again from it (the no-reply path never answers a customer who wrote).
        """
        contact = turn.contact
        contact["last_inbound_at"] = event.at
        _note_channel(turn, runner.waiting_for_reply(contact), event)
        contact_state.note_inbound(contact, event.at)  # the inbox shows them as unread
        if event.name and not contact.get("name"):
            contact["name"] = event.name
        run = runner.waiting_for_reply(contact)
        if run is not None:
            compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
            if contact.get("assigned_agent"):
                runner.customer_wrote_to_agent(turn, compiled, run)
            else:
                runner.deliver_other_message(turn, compiled, run, event.kind)
        return TurnResult(contact, run=run)

    async def _message_status(self, turn: runner.Turn, event: MessageStatus) -> TurnResult:
        """A status of a message a run sent: a step on that run, and ``on_failure`` when it failed."""
        found = statuses.sender_of(turn.contact, event.message_id)
        if found is None:
            return TurnResult(turn.contact, changed=False)  # not sent by a run (agent, broadcast)
        run, node_id = found
        compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
        statuses.apply_status(
            turn,
            compiled,
            run,
            node_id,
            event.message_id,
            event.status,
            event.error_code,
            event.error,
            event.error_title,
        )
        await self._follow_connects(turn)
        return TurnResult(turn.contact, run=run)

    async def _timer(self, turn: runner.Turn, event: TimerFired) -> TurnResult:
        timers: list[TimerDoc] = turn.contact.get("timers", [])
        timer = next((t for t in timers if t["id"] == event.event_id), None)
        if timer is None:
            return TurnResult(turn.contact, changed=False)  # stale: the run moved on
        if timer.get("kind") == holds.WAKE:  # a held message's time has come: the commit sends it
            holds.wake(turn, timer)
            return TurnResult(turn.contact)
        run = next((r for r in turn.contact.get("runs", []) if r["id"] == timer["run_id"]), None)
        if run is None or run["status"] not in runner.ACTIVE:
            turn.contact["timers"] = [t for t in timers if t["id"] != timer["id"]]
            return TurnResult(turn.contact, run=run)
        compiled = await self._deps.flow_cache.get(run["flow_id"], run["version"])
        if not runner.fire_timer(turn, compiled, run, timer):
            turn.contact["timers"] = [t for t in timers if t["id"] != timer["id"]]
        await self._follow_connects(turn)
        return TurnResult(turn.contact, run=run)

    # --- the send policy (server/sending/) --------------------------------------------------

    async def _screen_sends(self, turn: runner.Turn, before: dict[str, Any], event: Event) -> None:
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

    def _defer_send(self, turn: runner.Turn, event: DeferSend) -> TurnResult:
        """The effects were told "later" for a message (Meta's code, or quiet hours): keep it."""
        message = next((m for m in turn.contact.get("outbox", []) if m["id"] == event.message_id), None)
        if message is None:
            return TurnResult(turn.contact, changed=False)  # sent or dropped meanwhile
        current = message.get("not_before")
        if current is not None and holds.held(message, turn.now) and as_utc(current) >= as_utc(event.until):
            return TurnResult(turn.contact, changed=False)
        holds.hold(
            turn,
            message,
            event.until,
            event.reason,
            event.detail,
            attempt=event.attempt,
            whole_contact=event.whole_contact,
        )
        return TurnResult(turn.contact)


def _note_channel(turn: runner.Turn, waiting: dict[str, Any] | None, event: InboundMessage) -> None:
    """The customer wrote to ``event.channel_id``: what answers them goes out through that number
    (the run waiting for them, and agents' messages), as the customer expects."""
    if event.channel_id is None:  # the sandbox: nothing to follow
        return
    turn.contact["inbound_channel_id"] = event.channel_id
    if waiting is not None and waiting.get("channel_id") != event.channel_id:
        waiting["channel_id"] = event.channel_id
        turn.changed_runs.add(waiting["id"])


def _fail(mailbox: deque[Envelope] | None, error: Exception) -> None:
    while mailbox:
        _, future = mailbox.popleft()
        if not future.done():
            future.set_exception(error)


def event_id() -> str:
    return new_id("evt")
