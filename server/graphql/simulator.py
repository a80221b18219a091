"""``simulateFlow``: try a flow (draft or published) on a virtual clock; nothing sent or stored.

See ``docs/simulator.md`` and ``server/operations/simulation.py``. The answer is what an editor
shows as a chat preview: the transcript rendered as in the sandbox, every step with the
contact's tags and variables after it, the runs, and where the conversation ended and why.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from server.documents import RunDoc, StepDoc
from server.graphql import runs
from server.graphql.context import TenantInfo
from server.graphql.json_values import plain
from server.graphql.messages import RenderedMessage
from server.graphql.permissions import ADMIN_ONLY
from server.graphql.runs import RunStatus
from server.graphql.types import FlowIssue
from server.machines.rendering import plain_text
from server.machines.turn import ACTIVE
from server.operations import simulation as ops
from server.window import window_open


@strawberry.input(description="what the simulated customer does, and when")
class SimulationInput:
    after: str = strawberry.field(
        default="0s", description="how long after the previous input (or the start): 30m, 3h, 2d, PT90S"
    )
    text: str | None = strawberry.field(default=None, description="a text message")
    button: str | None = strawberry.field(default=None, description="the id of a button tapped")
    kind: str | None = strawberry.field(
        default=None,
        description="a message that is not text (image, video, audio, document, sticker, location, "
        "contacts, reaction): it opens the 24-hour window and answers nothing",
    )


@strawberry.enum
class Direction(Enum):
    IN = "in"
    OUT = "out"


@strawberry.type(description="a message of the simulated conversation, as the customer sees it")
class SimulatedMessage:
    entry: strawberry.Private[ops.SimulatedMessage]

    @strawberry.field(description="virtual time")
    def at(self) -> datetime:
        return self.entry.at

    @strawberry.field
    def direction(self) -> Direction:
        return Direction(self.entry.direction)

    @strawberry.field(description="text, buttons, template, media, list; in: text, button or another kind")
    def kind(self) -> str:
        return str(self.entry.message.get("kind") or "text")

    @strawberry.field(description="the node that sent it (out)")
    def node(self) -> str | None:
        return self.entry.message.get("node")

    @strawberry.field(description="the id of the button tapped (in)")
    def button_id(self) -> str | None:
        return self.entry.message.get("button_id")

    @strawberry.field(description="the message as plain text, as `konvo chat` prints it")
    def text(self) -> str:
        return plain_text(self.entry.rendered)

    @strawberry.field(description="header, body, footer and every button, as in the sandbox")
    def rendered(self) -> RenderedMessage:
        return RenderedMessage(doc=self.entry.rendered)


@strawberry.type(description="a step of a simulated run, with the contact as it was right after it")
class SimulatedStep:
    entry: strawberry.Private[ops.SimulatedStep]

    @property
    def doc(self) -> StepDoc:
        return self.entry.step

    @strawberry.field
    def run_id(self) -> strawberry.ID:
        return strawberry.ID(self.entry.run_id)

    @strawberry.field
    def flow_name(self) -> str:
        return self.entry.flow_name

    @strawberry.field(description="virtual time")
    def at(self) -> datetime:
        return runs.step_at(self)

    @strawberry.field
    def node(self) -> str | None:
        return runs.step_node(self)

    @strawberry.field
    def action(self) -> str:
        return runs.step_action(self)

    @strawberry.field
    def outcome(self) -> str:
        return runs.step_outcome(self)

    @strawberry.field
    def detail(self) -> JSON | None:
        return runs.step_detail(self)

    @strawberry.field
    def warnings(self) -> list[str]:
        return runs.step_warnings(self)

    @strawberry.field(description="the contact's tags right after the step")
    def tags(self) -> list[str]:
        return self.entry.tags

    @strawberry.field(description="the contact's variables right after the step")
    def variables(self) -> JSON:
        return plain(self.entry.variables)

    @strawberry.field
    def opted_in(self) -> bool:
        return self.entry.opted_in

    @strawberry.field(description="the 24-hour customer service window was open at the step")
    def window_open(self) -> bool:
        return self.entry.window_open


@strawberry.type(description="a run of the simulation (the flow's, and any it connected to)")
class SimulatedRun:
    doc: strawberry.Private[RunDoc]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return runs.run_id(self)

    @strawberry.field
    def flow_name(self) -> str:
        return str(self.doc.get("flow_name") or "")

    @strawberry.field
    def status(self) -> RunStatus:
        return runs.run_status(self)

    @strawberry.field
    def node(self) -> str | None:
        return runs.run_node(self)

    @strawberry.field
    def end_reason(self) -> str | None:
        return runs.run_end_reason(self)

    @strawberry.field
    def waiting_for(self) -> JSON | None:
        return runs.run_waiting_for(self)

    @strawberry.field
    def started_at(self) -> datetime:
        return runs.run_started_at(self)

    @strawberry.field
    def ended_at(self) -> datetime | None:
        return runs.run_ended_at(self)


@strawberry.type(description="where the conversation ended (its latest run) and why")
class SimulationEnd:
    flow_name: str
    status: RunStatus
    node: str | None
    reason: str | None = strawberry.field(description="the run's end reason (WINDOW_CLOSED, NO_OPT_IN...)")
    why: str = strawberry.field(description="the same in words")
    at: datetime | None = strawberry.field(description="virtual time it ended; null while waiting")


def _why(result: ops.Simulation, run: RunDoc) -> str:
    """A sentence on the run's end: the failing step's own explanation when it gave one."""
    status, reason = run["status"], run.get("end_reason") or ""
    if status in ACTIVE:
        waiting = run.get("waiting_for") or {}
        if result.stopped:
            return f"still {status} when the simulation stopped ({result.stopped})"
        kind = waiting.get("kind") or "reply"
        return f"waiting at {run.get('node')!r} for the customer ({kind}); no timer is left"
    explained = [
        s.step["detail"]["why"]
        for s in result.steps
        if s.run_id == run["id"] and isinstance(s.step.get("detail"), dict) and s.step["detail"].get("why")
    ]
    if status == "failed" and explained:
        return f"failed at {run.get('node')!r} ({reason}): {explained[-1]}"
    if status == "completed":
        return "connected to another flow" if reason == "connected" else "reached the end of the flow"
    return f"{status} ({reason})"


@strawberry.type(description="a flow run on a virtual clock: the transcript, every step, the end")
class Simulation:
    result: strawberry.Private[ops.Simulation]

    @strawberry.field(description="virtual time the run started")
    def started_at(self) -> datetime:
        return self.result.started_at

    @strawberry.field(description="virtual time of the last event simulated")
    def ended_at(self) -> datetime:
        return self.result.ended_at

    @strawberry.field(description="every message in and out, in order")
    def transcript(self) -> list[SimulatedMessage]:
        return [SimulatedMessage(entry=m) for m in self.result.transcript]

    @strawberry.field(description="every step of every run, in order, with tags and variables after it")
    def steps(self) -> list[SimulatedStep]:
        return [SimulatedStep(entry=s) for s in self.result.steps]

    @strawberry.field(description="the runs: the flow's, then any it connected to")
    def runs(self) -> list[SimulatedRun]:
        return [SimulatedRun(doc=r) for r in self.result.runs]

    @strawberry.field(description="where the conversation ended (its latest run) and why")
    def end(self) -> SimulationEnd | None:
        run = self.result.last_run
        if run is None:
            return None
        return SimulationEnd(
            flow_name=str(run.get("flow_name") or ""),
            status=RunStatus(run["status"]),
            node=run.get("node"),
            reason=run.get("end_reason"),
            why=_why(self.result, run),
            at=run.get("ended_at"),
        )

    @strawberry.field(
        description="the contact at the end: tags, variables, optedIn, assignedAgentId, windowOpen"
    )
    def contact(self) -> JSON:
        contact = self.result.contact
        return plain(
            {
                "phone": contact["phone"],
                "tags": contact.get("tags", []),
                "variables": contact.get("variables", {}),
                "optedIn": bool(contact.get("opted_in")),
                "assignedAgentId": contact.get("assigned_agent"),
                "windowOpen": window_open(contact.get("last_inbound_at"), self.result.ended_at),
            }
        )

    @strawberry.field(description="warnings the validator has on the flow (errors refuse the simulation)")
    def issues(self) -> list[FlowIssue]:
        return [FlowIssue.of(i) for i in self.result.issues]

    @strawberry.field(description="turns simulated (the start, each input, each timer)")
    def turns(self) -> int:
        return self.result.turns

    @strawberry.field(description="TURN_LIMIT or HORIZON when a limit ended the simulation early; else null")
    def stopped(self) -> str | None:
        return self.result.stopped


@strawberry.type
class SimulatorQuery:
    @strawberry.field(
        permission_classes=ADMIN_ONLY,
        description="run a flow document (draft or published) for a simulated contact on a virtual clock; "
        "nothing is sent or stored",
    )
    async def simulate_flow(
        self,
        info: TenantInfo,
        definition: JSON,
        *,
        contact: Annotated[
            JSON | None,
            strawberry.argument(
                description="phone, name, tags, variables, optedIn, lastInboundAt, windowOpen, assignedAgent"
            ),
        ] = None,
        script: list[SimulationInput],
        trigger: Annotated[
            JSON | None, strawberry.argument(description="the run's {{trigger.*}} values")
        ] = None,
        start_at: Annotated[
            datetime | None, strawberry.argument(description="virtual start; default now")
        ] = None,
    ) -> Simulation:
        ctx = info.context
        inputs = [{"after": i.after, "text": i.text, "button": i.button, "kind": i.kind} for i in script]
        result = await ops.simulate(
            ctx.services, ctx.workspace(), definition, contact, inputs, trigger, start_at
        )
        return Simulation(result=result)
