"""``simulateFlow``: a flow run for a pretend contact on a virtual clock, through the real turn logic.

The flow (a draft, or any definition) runs exactly as a published version would: the turns go
through ``TurnLogic``, the code the contact actors run (start, replies and the reply rules,
timers, ``connect_flow``, ``assign``, opt-in and the 24-hour window), on a contact document
kept in memory. What differs is around the turns:

- time is virtual: it starts at ``start_at`` (default: now) and jumps to each script input
  (``after`` the previous one) and to each timer when it falls due, so days pass in
  milliseconds. A timer due at the same moment as an input fires first;
- nothing is sent or stored: queued messages go to the transcript as the customer would see
  them (``rendered``, as in the sandbox), timers to a list the loop fires from, and the
  workspace is only read (flows a ``connect_flow`` names, templates, fields, agents; a round
  robin shows the agent it would pick without taking the turn);
- the script is the only customer: a message no run waits for starts no keyword trigger.

After the script, timers still pending fire in order (a no-reply path taken, a delay ended),
until the runs wait for nothing but the customer or ``MAX_TURNS`` / ``HORIZON`` stop it.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from server.actors.agent_picker import AgentPicker
from server.actors.contact_commands import TurnExtras
from server.actors.events import Event, InboundMessage, StartFlow, TimerFired
from server.actors.flow_cache import FlowCache
from server.actors.turn_logic import SegmentMatcher, TurnLogic
from server.clock import as_utc
from server.documents import ContactDoc, RunDoc, StepDoc, TimerDoc
from server.durations import parse_duration
from server.errors import InvalidFlow, InvalidInput
from server.ids import ContactKey, new_id
from server.machines.compiler import CompiledFlow, compile_flow
from server.machines.definition import parse_flow
from server.machines.flow_checks.issues import FlowIssue
from server.machines.rendering import render_message
from server.machines.turn import AssignRequest
from server.machines.values import coerce_value
from server.operations.catalog import CatalogServices, catalog_snapshot
from server.operations.contact_identifiers import PhoneServices, contact_phone
from server.operations.flows import issues_of
from server.segments import matches
from server.store.contacts import new_contact
from server.text_input import MAX_BUTTON_ID, MAX_MESSAGE_TEXT, checked_characters
from server.window import window_open

MAX_SCRIPT = 200  # inputs in one script
MAX_TURNS = 1_000  # turns one simulation may take (a flow that loops on a delay stops here)
HORIZON = timedelta(days=400)  # virtual time one simulation may cover
DEFAULT_PHONE = "+15550100000"  # a fictional number (555-01xx), for a contact given without one
# Kinds of customer message that are not text: recorded, they choose no path (like a real one).
OTHER_KINDS = ("image", "video", "audio", "document", "sticker", "location", "contacts", "reaction")
CONTACT_KEYS = (
    "phone",
    "name",
    "tags",
    "variables",
    "optedIn",
    "lastInboundAt",
    "windowOpen",
    "assignedAgent",
)


class SimulationServices(CatalogServices, PhoneServices, Protocol):
    """A flow simulation: the catalog it validates against, the compiled-flow cache and the agent picker."""

    @property
    def flow_cache(self) -> FlowCache: ...

    @property
    def picker(self) -> AgentPicker: ...


@dataclass(frozen=True)
class ScriptInput:
    """What the customer does, ``after`` the previous input (or the start)."""

    after: timedelta
    text: str | None = None
    button: str | None = None
    kind: str = "text"


@dataclass
class SimulatedStep:
    run_id: str
    flow_name: str
    step: StepDoc
    tags: list[str]
    variables: dict[str, Any]
    opted_in: bool
    window_open: bool


@dataclass
class SimulatedMessage:
    at: datetime
    direction: str  # "in" | "out"
    message: dict[str, Any]
    rendered: dict[str, Any]


@dataclass
class Simulation:
    started_at: datetime
    ended_at: datetime
    contact: ContactDoc
    transcript: list[SimulatedMessage] = field(default_factory=list)
    steps: list[SimulatedStep] = field(default_factory=list)
    issues: list[FlowIssue] = field(default_factory=list)
    turns: int = 0
    stopped: str | None = None  # TURN_LIMIT or HORIZON when a limit ended the simulation

    @property
    def runs(self) -> list[RunDoc]:
        return list(self.contact.get("runs", []))

    @property
    def last_run(self) -> RunDoc | None:
        runs = self.runs
        return runs[-1] if runs else None


def parse_script(script: list[dict[str, Any]]) -> list[ScriptInput]:
    """The script's inputs, each checked; an error names the input (``script[2].after``)."""
    if len(script) > MAX_SCRIPT:
        raise InvalidInput(f"a script has at most {MAX_SCRIPT} inputs", field="script")
    parsed = []
    for index, raw in enumerate(script):
        where = f"script[{index}]"
        try:
            after = parse_duration(str(raw.get("after") or "0s"))
        except ValueError as exc:
            raise InvalidInput(str(exc), field=f"{where}.after") from None
        text, button, kind = raw.get("text"), raw.get("button"), raw.get("kind")
        if text is not None:
            checked_characters(
                text, field=f"{where}.text", what="the customer's message", limit=MAX_MESSAGE_TEXT
            )
        if button is not None:
            checked_characters(button, field=f"{where}.button", what="a button id", limit=MAX_BUTTON_ID)
        if kind is not None and kind not in OTHER_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(OTHER_KINDS)}", field=f"{where}.kind")
        if kind is not None and (text is not None or button is not None):
            raise InvalidInput("a message of another kind has no text or button", field=f"{where}.kind")
        if text is None and button is None and kind is None:
            raise InvalidInput("say something: give a text, a button or a kind", field=where)
        parsed.append(ScriptInput(after, text, button, kind or ("button" if button is not None else "text")))
    return parsed


class _Flows:
    """``FlowLookup`` for a simulation: the simulated flow by its id or name, others read-only."""

    def __init__(self, services: SimulationServices, simulated: dict[str, Any]) -> None:
        self._services = services
        self._simulated = simulated

    async def get_by_name(self, workspace_id: str, name: str) -> dict[str, Any] | None:
        if name == self._simulated["name"]:
            return self._simulated
        return await self._services.flows.get_by_name(workspace_id, name)

    async def get_recent(self, workspace_id: str, flow_id: str) -> dict[str, Any] | None:
        if flow_id == self._simulated["_id"]:
            return self._simulated
        return await self._services.flows.get(workspace_id, flow_id)


class _Compiled:
    """``CompiledLookup``: the simulated draft's machine, else the published versions' cache."""

    def __init__(
        self, services: SimulationServices, simulated: dict[str, Any], compiled: CompiledFlow
    ) -> None:
        self._services = services
        self._key = (simulated["_id"], simulated["active_version"])
        self._compiled = compiled

    async def get(self, flow_id: str, version: int) -> CompiledFlow:
        if (flow_id, version) == self._key:
            return self._compiled
        return await self._services.flow_cache.get(flow_id, version)


@dataclass
class _Sources:
    """``TurnSources`` of a simulation: what the workspace has, read; nothing written."""

    flows: _Flows
    flow_cache: _Compiled
    timezone_of: Callable[[str], Awaitable[str]]
    fields_of: Callable[[str], Awaitable[dict[str, tuple[str, list[str]]]]]
    extras_of: Callable[[str], Awaitable[TurnExtras]]
    assigner: Callable[[str, AssignRequest], Awaitable[tuple[dict[str, Any] | None, str | None]]]
    segment_matcher: SegmentMatcher | None = matches  # takes the workspace's zone as its 4th argument
    inbound_trigger: None = None  # the script is the only customer: no keyword starts a flow
    default_channel_of: None = None  # nothing is sent: the run needs no number


class _Recorder:
    """``TurnObserver``: each step with the contact's tags and variables right after it."""

    def __init__(self, contact: ContactDoc, now: datetime, into: list[SimulatedStep]) -> None:
        self._contact = contact
        self._now = now
        self._into = into

    def step(self, run: RunDoc, step: StepDoc) -> None:
        contact = self._contact
        self._into.append(
            SimulatedStep(
                run_id=run["id"],
                flow_name=str(run.get("flow_name") or ""),
                step=copy.deepcopy(step),
                tags=list(contact.get("tags", [])),
                variables=copy.deepcopy(contact.get("variables", {})),
                opted_in=bool(contact.get("opted_in")),
                window_open=window_open(contact.get("last_inbound_at"), self._now),
            )
        )

    def entered(self, run: RunDoc, node_id: str) -> None:
        return None

    def waited(self, run: RunDoc, node_id: str) -> None:
        return None


async def _checked_flow(
    services: SimulationServices, workspace_id: str, definition: Any
) -> tuple[dict[str, Any], CompiledFlow, list[FlowIssue]]:
    """The flow as a published version would be; refused like ``publishFlow`` when it has errors."""
    if not isinstance(definition, dict):
        raise InvalidInput("definition must be a flow document (a JSON object)", field="definition")
    parsed = parse_flow(definition)
    existing = await services.flows.get_by_name(workspace_id, parsed.name)
    catalog = await catalog_snapshot(services, workspace_id, existing["_id"] if existing else None)
    issues = issues_of(definition, catalog)
    errors = [i for i in issues if i.severity == "ERROR"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidFlow(
            f"{first.code}: {first.message}{more}", node_id=first.node_id, issues=[i.code for i in errors]
        )
    simulated = {
        "_id": existing["_id"] if existing else "simulated",
        "workspace_id": workspace_id,
        "name": parsed.name,
        "status": "active",
        # The version it would get if published now: other runs of it are told apart by it.
        "active_version": int((existing or {}).get("version_counter") or 0) + 1,
    }
    return simulated, compile_flow(parsed), [i for i in issues if i.severity != "ERROR"]


async def _contact(
    services: SimulationServices, workspace_id: str, given: Any, start: datetime
) -> ContactDoc:
    """The pretend contact: ``given`` (tags, variables, consent, window, agent) over a new one."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidInput("contact must be a JSON object", field="contact")
    unknown = sorted(set(given) - set(CONTACT_KEYS))
    if unknown:
        raise InvalidInput(
            f"unknown contact key {unknown[0]!r}; use {', '.join(CONTACT_KEYS)}", field="contact"
        )
    phone = DEFAULT_PHONE
    if given.get("phone") is not None:
        phone = await contact_phone(services, workspace_id, given["phone"], field="contact.phone")
    contact = new_contact(ContactKey(workspace_id, phone), start)
    if given.get("name") is not None:
        contact["name"] = str(given["name"])
    tags = given.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput("tags must be a list of tag names", field="contact.tags")
    contact["tags"] = list(dict.fromkeys(tags))
    variables = given.get("variables") or {}
    if not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", field="contact.variables")
    fields = await services.caches.fields_of(workspace_id)
    regional = await services.caches.regional_of(workspace_id)
    for name, raw in variables.items():
        known = fields.get(name)
        try:
            contact["variables"][name] = coerce_value(known[0], known[1], raw, regional) if known else raw
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=f"contact.variables.{name}") from None
    if given.get("optedIn"):
        contact["opted_in"] = True
        contact["opt_in"] = {"at": start, "source": "simulation"}
    contact["last_inbound_at"] = _last_inbound(given, start)
    if given.get("assignedAgent"):
        agent, why = await services.picker.agent(workspace_id, str(given["assignedAgent"]))
        if agent is None:
            raise InvalidInput(str(why), field="contact.assignedAgent")
        contact["assigned_agent"] = agent["_id"]
    return contact


def _last_inbound(given: dict[str, Any], start: datetime) -> datetime | None:
    """When the customer last wrote: ``lastInboundAt`` (a moment, or a duration before the start),
    or the start itself with ``windowOpen: true``; None (window closed) by default."""
    raw = given.get("lastInboundAt")
    if raw is None:
        return start if given.get("windowOpen") else None
    try:
        return start - parse_duration(str(raw))
    except ValueError:
        pass
    try:
        return as_utc(datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(
            "lastInboundAt is a moment (ISO-8601) or how long before the start (30m, 2h, 1d)",
            field="contact.lastInboundAt",
        ) from None


def _tapped_title(transcript: list[SimulatedMessage], button: str | None) -> str | None:
    """A tap shows in the chat as the button's title (of the latest message offering it)."""
    for entry in reversed(transcript):
        for offered in entry.rendered.get("buttons") or []:
            if button is not None and offered.get("id") == button:
                return offered.get("title") or button
    return None


class _Simulator:
    def __init__(self, logic: TurnLogic, contact: ContactDoc, result: Simulation) -> None:
        self._logic = logic
        self._key = ContactKey.of_contact(contact)
        self.contact = contact
        self.result = result

    async def turn(self, event: Event, now: datetime) -> None:
        """One turn as the actor takes it, its effects kept in memory instead of performed."""
        before = self.contact
        working = copy.deepcopy(before)
        turn = await self._logic.begin(working, now, observer=_Recorder(working, now, self.result.steps))
        outcome = await self._logic.apply(self._key, turn, event)
        self.result.turns += 1
        if not outcome.changed:
            return
        self._logic.finish(before, turn, event)
        for message in working.get("outbox", []):
            self.result.transcript.append(
                SimulatedMessage(now, "out", message, message.get("rendered") or {})
            )
        working["outbox"] = []
        self.contact = working

    def next_timer(self) -> TimerDoc | None:
        timers = self.contact.get("timers", [])
        return min(timers, key=lambda t: (as_utc(t["due_at"]), t["id"])) if timers else None

    async def fire_due(self, until: datetime | None) -> datetime | None:
        """Fire timers due by ``until`` (None: all of them) in order; the moment of the last one."""
        last = None
        while (timer := self.next_timer()) is not None:
            due = as_utc(timer["due_at"])
            if until is not None and due > until:
                break
            if self.result.turns >= MAX_TURNS:
                self.result.stopped = "TURN_LIMIT"
                break
            if due - self.result.started_at > HORIZON:
                self.result.stopped = "HORIZON"
                break
            await self.turn(TimerFired(timer["id"]), due)
            last = due
        return last


async def simulate(
    services: SimulationServices,
    workspace_id: str,
    definition: Any,
    contact: Any,
    script: list[dict[str, Any]],
    trigger: Any = None,
    start_at: datetime | None = None,
) -> Simulation:
    """Run ``definition`` for a pretend ``contact`` through ``script``; see the module's docstring."""
    if trigger is not None and not isinstance(trigger, dict):
        raise InvalidInput("trigger must be a JSON object", field="trigger")
    inputs = parse_script(script)
    simulated, compiled, issues = await _checked_flow(services, workspace_id, definition)
    start = as_utc(start_at) if start_at is not None else services.clock.now()
    document = await _contact(services, workspace_id, contact, start)
    sources = _Sources(
        flows=_Flows(services, simulated),
        flow_cache=_Compiled(services, simulated, compiled),
        timezone_of=services.caches.timezone_of,
        fields_of=services.caches.fields_of,
        extras_of=services.caches.extras_of,
        assigner=lambda ws, request: services.picker.for_node(ws, request, take_turn=False),
    )
    result = Simulation(started_at=start, ended_at=start, contact=document, issues=issues)
    simulator = _Simulator(TurnLogic(sources), document, result)
    await simulator.turn(StartFlow(new_id("sim"), simulated["_id"], dict(trigger or {}), source="api"), start)
    now = start
    for item in inputs:
        now = now + item.after
        await simulator.fire_due(now)
        if result.stopped:
            break
        message = {"direction": "in", "text": item.text, "button_id": item.button, "kind": item.kind}
        shown = {**message, "text": item.text or _tapped_title(result.transcript, item.button)}
        result.transcript.append(SimulatedMessage(now, "in", message, render_message(shown)))
        event = InboundMessage(new_id("sim"), now, text=item.text, button_id=item.button, kind=item.kind)
        await simulator.turn(event, now)
    if not result.stopped:
        now = max(now, await simulator.fire_due(None) or now)
    result.contact = simulator.contact
    result.ended_at = now
    return result
