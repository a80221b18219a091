"""What one turn of a contact does with an event: the orchestration around the pure runner.

A turn starts flows (following ``connect_flow`` and ``assign`` nodes), delivers what the
customer says, fires timers, applies message statuses and contact commands. That needs a few
reads (flows by name, compiled versions, the workspace's fields, templates and agents) but no
write: the actor (``contact_actor.py``) commits the contact and performs the effects, and the
flow simulator (``server/operations/simulation.py``) keeps everything in memory on a virtual
clock. Both run turns through ``TurnLogic``, so a simulated run takes the very path a real one
does; only ``TurnSources`` differ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from server.actors import contact_commands
from server.actors.events import (
    CONTACT_COMMANDS,
    IDENTITY_COMMANDS,
    DeferSend,
    EndFlowRuns,
    Event,
    InboundMessage,
    MessageStatus,
    StartFlow,
    StopRun,
    TimerFired,
    TurnResult,
)
from server.actors.identity_commands import apply_identity_command, note_identities
from server.clock import as_utc
from server.documents import ContactDoc, RunDoc
from server.errors import InvalidInput, NotFound
from server.identity import Identities
from server.ids import ContactKey
from server.machines import contact_state, runner, statuses
from server.machines.compiler import CompiledFlow
from server.machines.turn import ACTIVE, AssignRequest, Turn, TurnObserver, end_run
from server.sending import holds

log = logging.getLogger(__name__)

APPLIED_EVENTS_KEPT = 200
ENDED_RUNS_KEPT = 20

SegmentMatcher = Callable[[dict[str, Any], Mapping[str, Any], datetime, str], bool]  # + workspace zone
Assigner = Callable[[str, AssignRequest], Awaitable[tuple[dict[str, Any] | None, str | None]]]
InboundTrigger = Callable[[str, str | None, str | None], Awaitable[tuple[str, dict[str, Any]] | None]]


class FlowLookup(Protocol):
    """Flow documents by name or id (``FlowRepository``; the simulator adds its draft)."""

    async def get_by_name(self, workspace_id: str, name: str) -> dict[str, Any] | None: ...

    async def get_recent(self, workspace_id: str, flow_id: str) -> dict[str, Any] | None: ...


class CompiledLookup(Protocol):
    """The compiled machine of a flow version (``FlowCache``)."""

    async def get(self, flow_id: str, version: int) -> CompiledFlow: ...


class TurnSources(Protocol):
    """What turns read; ``ActorDeps`` is one, the simulator's sources another.

    Read-only properties: a turn never assigns them, and a source may narrow a member's type
    (the simulator has no inbound triggers: ``None``)."""

    @property
    def flows(self) -> FlowLookup: ...

    @property
    def flow_cache(self) -> CompiledLookup: ...

    @property
    def timezone_of(self) -> Callable[[str], Awaitable[str]]: ...

    @property
    def segment_matcher(self) -> SegmentMatcher | None: ...

    @property
    def fields_of(self) -> Callable[[str], Awaitable[dict[str, tuple[str, list[str]]]]] | None: ...

    # Template categories, field links and opt-out words of a workspace (cached by the runtime).
    @property
    def extras_of(self) -> Callable[[str], Awaitable[contact_commands.TurnExtras]] | None: ...

    # Picks the agent for an ``assign`` node: (agent document or None, why not).
    @property
    def assigner(self) -> Assigner | None: ...

    # Inbound triggers (keywords, catch-all): (workspace, text, button) -> (flow id, trigger) or None.
    @property
    def inbound_trigger(self) -> InboundTrigger | None: ...

    # The workspace's default channel id now (None: the sandbox), for runs started without one.
    @property
    def default_channel_of(self) -> Callable[[str], Awaitable[str | None]] | None: ...


class TurnLogic:
    """Applies events to a working copy of a contact document; shared by every actor of a process."""

    def __init__(self, sources: TurnSources) -> None:
        self._sources = sources

    async def begin(self, contact: ContactDoc, now: datetime, observer: TurnObserver | None = None) -> Turn:
        """A turn over ``contact`` (a working copy) at ``now``, with what the workspace has."""
        sources = self._sources
        workspace_id = contact["workspace_id"]
        turn = Turn(
            contact=contact,
            now=now,
            timezone=await sources.timezone_of(workspace_id),
            segment_matcher=sources.segment_matcher,
            fields=await sources.fields_of(workspace_id) if sources.fields_of else {},
            observer=observer,
        )
        (await self._extras(workspace_id)).fill(turn)
        return turn

    @staticmethod
    def finish(before: ContactDoc | None, turn: Turn, event: Event) -> None:
        """Bookkeeping of a turn that changed the contact: inbox order, version, applied event ids,
        and only the latest ``ENDED_RUNS_KEPT`` ended runs kept (the ``runs`` collection has all)."""
        contact = turn.contact
        contact_state.note_outbound(before, contact, turn.now)
        contact["version"] = contact["version"] + 1
        contact["updated_at"] = turn.now
        applied = contact.setdefault("applied_events", [])
        applied.append(event.event_id)
        del applied[:-APPLIED_EVENTS_KEPT]
        ended = [r for r in contact.get("runs", []) if r["status"] not in ACTIVE]
        if len(ended) > ENDED_RUNS_KEPT:
            drop = {r["id"] for r in ended[: len(ended) - ENDED_RUNS_KEPT]}
            contact["runs"] = [r for r in contact["runs"] if r["id"] not in drop]

    async def apply(self, key: ContactKey, turn: Turn, event: Event) -> TurnResult:
        if isinstance(event, StartFlow):
            if event.contact_values or event.contact_tags:  # before the first message renders
                contact_commands.set_contact_data(
                    turn, event.contact_values, event.contact_links, event.contact_tags
                )
            run = await self.start_flow(
                key,
                turn,
                event.flow_id,
                event.trigger,
                by_name=False,
                source=event.source,
                channel_id=event.channel_id,
            )
            await self._follow_connects(key, turn)
            return TurnResult(turn.contact, run=run)
        if isinstance(event, InboundMessage):
            if not event.moves_runs:
                return await self._inbound_noted(key, turn, event)
            return await self._inbound(key, turn, event)
        if isinstance(event, MessageStatus):
            return await self._message_status(key, turn, event)
        if isinstance(event, CONTACT_COMMANDS):
            return contact_commands.apply_command(turn, event)
        if isinstance(event, IDENTITY_COMMANDS):
            return apply_identity_command(turn, event)
        if isinstance(event, TimerFired):
            return await self._timer(key, turn, event)
        if isinstance(event, StopRun):
            stopped = next((r for r in turn.contact.get("runs", []) if r["id"] == event.run_id), None)
            if stopped is None:
                raise NotFound(f"run {event.run_id} not found")
            end_run(turn, stopped, "cancelled", event.reason)
            return TurnResult(turn.contact, run=stopped)
        if isinstance(event, DeferSend):
            return self._defer_send(turn, event)
        if isinstance(event, EndFlowRuns):
            ended = [
                run
                for run in turn.contact.get("runs", [])
                if run["flow_id"] == event.flow_id
                and run["version"] < event.below_version
                and run["status"] in ACTIVE
            ]
            for run in ended:
                end_run(turn, run, "cancelled", event.reason)
            return TurnResult(turn.contact, changed=bool(ended))
        raise InvalidInput(f"unknown event {type(event).__name__}")

    async def start_flow(
        self,
        key: ContactKey,
        turn: Turn,
        flow_ref: str,
        trigger: dict[str, Any],
        by_name: bool,
        source: str,
        channel_id: str | None = None,
    ) -> RunDoc:
        """Start a run of the flow's active version (``source``: api, webhook, broadcast, keyword,
        connect). While an agent owns the conversation the run is recorded as skipped with
        ``CONTACT_WITH_AGENT``, unless the flow runs while assigned or another run of this very
        conversation connects to it.

        The run's channel: ``channel_id`` (the caller's choice, the number the customer wrote to,
        or the connecting run's), else the flow's own, else the workspace's default now."""
        workspace_id = key.workspace_id
        flows = self._sources.flows
        named = await flows.get_by_name(workspace_id, flow_ref) if by_name else None
        flow = startable(named or await flows.get_recent(workspace_id, flow_ref), flow_ref)
        compiled = await self._sources.flow_cache.get(flow["_id"], flow["active_version"])
        channel_id = channel_id or flow.get("channel_id")
        if channel_id is None and self._sources.default_channel_of is not None:
            channel_id = await self._sources.default_channel_of(workspace_id)
        version = flow["active_version"]
        agent_id = turn.contact.get("assigned_agent")
        if agent_id and source != "connect" and not compiled.definition.settings.runs_while_assigned:
            run = runner.new_run(turn, compiled, flow["_id"], version, trigger, channel_id=channel_id)
            runner.skip_run(turn, run, agent_id)
            return run
        if compiled.definition.settings.supersede:
            for other in turn.contact.get("runs", []):
                if other["status"] in ACTIVE:
                    end_run(turn, other, "cancelled", "superseded")
        run = runner.new_run(turn, compiled, flow["_id"], version, trigger, channel_id=channel_id)
        runner.start(turn, compiled, run)
        return run

    async def _extras(self, workspace_id: str) -> contact_commands.TurnExtras:
        if self._sources.extras_of is None:
            return contact_commands.TurnExtras()
        return await self._sources.extras_of(workspace_id)

    async def _compiled(self, run: RunDoc) -> CompiledFlow:
        return await self._sources.flow_cache.get(run["flow_id"], run["version"])

    async def _follow_assigns(self, key: ContactKey, turn: Turn) -> None:
        """Pick agents for ``assign`` nodes reached in this turn and resume their runs."""
        while turn.assigns:  # bounded: each assign node is entered at most once per turn (spin guard)
            request = turn.assigns.pop(0)
            run = next(r for r in turn.contact["runs"] if r["id"] == request.run_id)
            compiled = await self._compiled(run)
            agent: dict[str, Any] | None = None
            why: str | None = "assignment is not configured in this process"
            if self._sources.assigner is not None:
                agent, why = await self._sources.assigner(key.workspace_id, request)
            runner.finish_assign(turn, compiled, request, agent, why)

    async def _follow_connects(self, key: ContactKey, turn: Turn) -> None:
        """Finish what nodes asked of the actor: agents to pick, then flows to connect to.

        Bounded without a depth limit: a flow's start node entered twice in one turn is a spin
        that the runner stops, so a chain of connections ends after at most one run per flow.
        """
        while True:
            await self._follow_assigns(key, turn)
            if not turn.connects:
                return
            request = turn.connects.pop(0)
            source = next(r for r in turn.contact["runs"] if r["id"] == request.from_run)
            try:  # the conversation goes on with the number it was on
                await self.start_flow(
                    key,
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

    async def _inbound(self, key: ContactKey, turn: Turn, event: InboundMessage) -> TurnResult:
        contact = turn.contact
        contact["last_inbound_at"] = event.at
        _note_channel(turn, runner.waiting_for_reply(contact), event)
        if event.name and not contact.get("name"):
            contact["name"] = event.name
        note_identities(contact, _sender(event))
        screened = contact_commands.screen_inbound(turn, event, await self._extras(key.workspace_id))
        if screened == "assigned":
            return await self._inbound_while_assigned(key, turn, event)
        if screened is not None:
            return TurnResult(contact)  # an opt-out keyword
        run = runner.waiting_for_reply(contact)
        if run is not None:
            runner.deliver_reply(turn, await self._compiled(run), run, event.text, event.button_id)
            await self._follow_connects(key, turn)
        else:
            run = await self._start_from_inbound_trigger(key, turn, event)
        return TurnResult(contact, run=run)

    async def _inbound_while_assigned(self, key: ContactKey, turn: Turn, event: InboundMessage) -> TurnResult:
        """A human owns the conversation: the message is theirs. A waiting run's no-reply time
        starts again, and a keyword trigger is recorded as skipped (``CONTACT_WITH_AGENT``) or,
        for a flow that runs while assigned, started; a catch-all trigger does nothing."""
        waiting = runner.waiting_for_reply(turn.contact)
        if waiting is not None:
            runner.customer_wrote_to_agent(turn, await self._compiled(waiting), waiting)
        run = await self._start_from_inbound_trigger(key, turn, event, keywords_only=True)
        return TurnResult(turn.contact, run=run or waiting)

    async def _start_from_inbound_trigger(
        self, key: ContactKey, turn: Turn, event: InboundMessage, keywords_only: bool = False
    ) -> RunDoc | None:
        """No run waits for this message: a keyword or catch-all trigger may start a flow, same turn."""
        if self._sources.inbound_trigger is None:
            return None
        found = await self._sources.inbound_trigger(key.workspace_id, event.text, event.button_id)
        if found is None:
            return None
        flow_id, trigger = found
        if keywords_only and "keyword" not in trigger:
            return None
        try:  # the number the customer wrote to answers them, whatever the flow's own channel
            run = await self.start_flow(
                key, turn, flow_id, trigger, by_name=False, source="keyword", channel_id=event.channel_id
            )
        except (NotFound, InvalidInput) as exc:  # the trigger's flow is archived or gone
            log.warning("inbound trigger %s not started: %s", trigger.get("inbound_trigger"), exc.message)
            return None
        await self._follow_connects(key, turn)
        return run

    async def _inbound_noted(self, key: ContactKey, turn: Turn, event: InboundMessage) -> TurnResult:
        """Media, location, reactions, a form's answer...: they open the 24-hour window.

        A location answers a location request and a form's answer the WhatsApp Flow that asked;
        anything else chooses no path. The customer is there, though: a run waiting for a reply
        records the message and its no-reply time starts again from it (the no-reply path never
        answers a customer who wrote).
        """
        contact = turn.contact
        contact["last_inbound_at"] = event.at
        _note_channel(turn, runner.waiting_for_reply(contact), event)
        contact_state.note_inbound(contact, event.at)  # the inbox shows them as unread
        if event.name and not contact.get("name"):
            contact["name"] = event.name
        note_identities(contact, _sender(event))
        run = runner.waiting_for_reply(contact)
        if run is not None:
            compiled = await self._compiled(run)
            if contact.get("assigned_agent"):
                runner.customer_wrote_to_agent(turn, compiled, run)
            else:
                runner.deliver_other_message(turn, compiled, run, event.kind, event.location, event.form)
                await self._follow_connects(key, turn)
        return TurnResult(contact, run=run)

    async def _message_status(self, key: ContactKey, turn: Turn, event: MessageStatus) -> TurnResult:
        """A status of a message a run sent: a step on that run, and ``on_failure`` when it failed."""
        found = statuses.sender_of(turn.contact, event.message_id)
        if found is None:
            return TurnResult(turn.contact, changed=False)  # not sent by a run (agent, broadcast)
        run, node_id = found
        statuses.apply_status(
            turn,
            await self._compiled(run),
            run,
            node_id,
            event.message_id,
            event.status,
            event.error_code,
            event.error,
            event.error_title,
        )
        await self._follow_connects(key, turn)
        return TurnResult(turn.contact, run=run)

    async def _timer(self, key: ContactKey, turn: Turn, event: TimerFired) -> TurnResult:
        timers = turn.contact.get("timers", [])
        timer = next((t for t in timers if t["id"] == event.event_id), None)
        if timer is None:
            return TurnResult(turn.contact, changed=False)  # stale: the run moved on
        if timer.get("kind") == holds.WAKE:  # a held message's time has come: the commit sends it
            holds.wake(turn, timer)
            return TurnResult(turn.contact)
        run = next((r for r in turn.contact.get("runs", []) if r["id"] == timer["run_id"]), None)
        if run is None or run["status"] not in ACTIVE:
            turn.contact["timers"] = [t for t in timers if t["id"] != timer["id"]]
            return TurnResult(turn.contact, run=run)
        if not runner.apply_timer(turn, await self._compiled(run), run, timer):
            turn.contact["timers"] = [t for t in timers if t["id"] != timer["id"]]
        await self._follow_connects(key, turn)
        return TurnResult(turn.contact, run=run)

    def _defer_send(self, turn: Turn, event: DeferSend) -> TurnResult:
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


def _note_channel(turn: Turn, waiting: RunDoc | None, event: InboundMessage) -> None:
    """The customer wrote to ``event.channel_id``: what answers them goes out through that number
    (the run waiting for them, and agents' messages), as the customer expects."""
    if event.channel_id is None:  # the sandbox: nothing to follow
        return
    turn.contact["inbound_channel_id"] = event.channel_id
    if waiting is not None and waiting.get("channel_id") != event.channel_id:
        waiting["channel_id"] = event.channel_id
        turn.changed_runs.add(waiting["id"])


def startable(flow: dict[str, Any] | None, flow_ref: str) -> dict[str, Any]:
    """``flow`` if a run of it may start: NotFound / InvalidInput saying why not."""
    if flow is None:
        raise NotFound(f"flow {flow_ref!r} not found")
    if flow.get("status") != "active" or not flow.get("active_version"):
        raise InvalidInput(
            f"flow {flow['name']!r} is {flow.get('status')}: only an active (published) flow starts"
        )
    return flow


def _sender(event: InboundMessage) -> Identities:
    return Identities(event.phone, event.bsuid, event.parent_bsuid, event.username)
