"""Run steps as typed GraphQL objects: one type per step action, all implementing ``Step``.

The runner records each step as ``{node, action, at, outcome, detail}`` (``record_step`` in
``server/machines/turn.py``, called by the runner, the node behaviours, ``statuses.py`` and
``server/actors/contact_commands.py``); ``server/graphql/runs.py`` reads the common fields.
Each action gets a type whose fields read its ``detail`` (``ButtonPressed.buttonId``,
``SendFailed.errorCode``...), and every type keeps the common fields, the raw ``detail`` among
them, so a client written today still reads what a later version adds. An action without a
type of its own (one added later) is an ``OtherStep``.

``Run.steps`` was a list of one flat type; ``Step`` is now the interface of the step types, so
``steps { action outcome detail }`` still works and ``... on SendFailed { errorCode }`` is typed
(codegen tools produce a union over ``__typename``). To type a new action: add a class below
implementing ``Step`` and a line to ``STEP_TYPES``.

A field name used by several step types has one GraphQL type in all of them (``buttonId`` is
nullable everywhere): GraphQL refuses a query selecting two same-named fields of different
types, so a timeline asking every step type at once stays valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.channels.whatsapp.errors import error_title
from server.graphql import runs
from server.graphql.catalog import Agent
from server.graphql.context import TenantInfo
from server.graphql.inbound_kinds import MessageLocation
from server.graphql.json_values import plain
from server.graphql.loaders import loaders
from server.graphql.messages import OutboundMessage


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@strawberry.interface(description="one thing that happened to a run; the type says which (see action)")
class Step:
    doc: strawberry.Private[dict[str, Any]]
    workspace_id: strawberry.Private[str]

    @property
    def _detail(self) -> dict[str, Any]:
        detail = self.doc.get("detail")
        return detail if isinstance(detail, dict) else {}

    @strawberry.field(description="the node it happened at (null before the first node and after the last)")
    def node(self) -> str | None:
        return runs.step_node(self)

    @strawberry.field(
        description="what happened, as stored (message_sent, button, ...): the type says it too"
    )
    def action(self) -> str:
        return runs.step_action(self)

    @strawberry.field
    def at(self) -> datetime:
        return runs.step_at(self)

    @strawberry.field(description="how it went: ok, queued, waiting, a status, or a reason code")
    def outcome(self) -> str:
        return runs.step_outcome(self)

    @strawberry.field(description="every stored detail, raw (forward compatible: new keys show here first)")
    def detail(self) -> JSON | None:
        return runs.step_detail(self)

    @strawberry.field(description="placeholders that had no value when the message was rendered")
    def warnings(self) -> list[str]:
        return runs.step_warnings(self)


@strawberry.interface(description="a step about one outbound message of the run")
class MessageStep(Step):
    @strawberry.field(description="the outbound message's id (our id; see message.providerMessageId)")
    def message_id(self) -> strawberry.ID | None:
        found = self._detail.get("message")
        return strawberry.ID(str(found)) if found else None

    @strawberry.field(description="the message as stored once sent (null while it waits in the outbox)")
    async def message(self, info: TenantInfo) -> OutboundMessage | None:
        message_id = self._detail.get("message")
        if not message_id:
            return None
        found = await loaders(info).messages.load((self.workspace_id, str(message_id)))
        return OutboundMessage(doc=found) if found else None


@strawberry.type(description="the run started (action started)")
class RunStarted(Step):
    @strawberry.field(description="the flow's name when it started")
    def flow_name(self) -> str | None:
        return _text(self._detail.get("flow"))


@strawberry.type(description="the run was not started: an agent owns the conversation (action not_started)")
class RunNotStarted(Step):
    @strawberry.field
    def agent_id(self) -> strawberry.ID | None:
        return self._detail.get("agent_id")

    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))


@strawberry.type(description="the customer chose a button, by tap, title or number (action button)")
class ButtonPressed(Step):
    @strawberry.field(description="the button chosen (nullable like every step's buttonId)")
    def button_id(self) -> str | None:
        return _text(self._detail.get("button"))

    @strawberry.field(description="what the customer typed (null for a tap)")
    def text(self) -> str | None:
        return _text(self._detail.get("text"))

    @strawberry.field(description="tap, title or number")
    def matched_by(self) -> str | None:
        return _text(self._detail.get("matched_by"))


@strawberry.type(description="the customer answered and the run went on_reply or on_other (action reply)")
class Replied(Step):
    @strawberry.field
    def text(self) -> str | None:
        return _text(self._detail.get("text"))

    @strawberry.field
    def button_id(self) -> str | None:
        return _text(self._detail.get("button"))

    @strawberry.field(description="on_reply or other")
    def path(self) -> str | None:
        return _text(self._detail.get("path"))


@strawberry.type(description="the customer wrote while an agent owns the conversation (action reply_held)")
class ReplyHeld(Step):
    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))

    @strawberry.field
    def no_reply_at(self) -> datetime | None:
        return _moment(self._detail.get("no_reply_at"))


@strawberry.type(description="what the customer sent chose no path (action reply_not_understood)")
class ReplyNotUnderstood(Step):
    @strawberry.field
    def text(self) -> str | None:
        return _text(self._detail.get("text"))

    @strawberry.field
    def button_id(self) -> str | None:
        return _text(self._detail.get("button"))

    @strawberry.field(description="the kind of a message that is not text (image, sticker...)")
    def kind(self) -> str | None:
        return _text(self._detail.get("kind"))

    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))

    @strawberry.field
    def no_reply_at(self) -> datetime | None:
        return _moment(self._detail.get("no_reply_at"))


@strawberry.type(description="a message was queued to the customer (action message_sent)")
class MessageSent(MessageStep):
    pass


@strawberry.type(description="a template was queued to the customer (action template_sent)")
class TemplateSent(MessageStep):
    pass


@strawberry.type(description="a message was not sent: the 24-hour window is closed (action message_not_sent)")
class MessageNotSent(Step):
    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))


@strawberry.type(description="a template was not sent: it needs consent (action template_not_sent)")
class TemplateNotSent(Step):
    @strawberry.field
    def template(self) -> str | None:
        return _text(self._detail.get("template"))

    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))


@strawberry.type(
    description="a message the run sent got further: sent, delivered, read (action message_status)"
)
class MessageStatusChanged(MessageStep):
    @strawberry.field
    def status(self) -> str:
        return str(self.doc.get("outcome"))


@strawberry.type(
    description="a message the run sent failed for good (action message_status, outcome failed): Meta's "
    "or our code, and what it means"
)
class SendFailed(MessageStep):
    @strawberry.field
    def error_code(self) -> str | None:
        return _text(self._detail.get("error_code"))

    @strawberry.field
    def error_title(self) -> str | None:
        return _text(self._detail.get("error_title")) or error_title(_text(self._detail.get("error_code")))

    @strawberry.field
    def error_detail(self) -> str | None:
        return _text(self._detail.get("error"))


@strawberry.type(description="the contact gave marketing consent (action opted_in)")
class OptedIn(Step):
    pass


@strawberry.type(description="tags added and removed (action tagged)")
class Tagged(Step):
    @strawberry.field
    def added(self) -> list[str]:
        return [str(t) for t in self._detail.get("add") or []]

    @strawberry.field
    def removed(self) -> list[str]:
        return [str(t) for t in self._detail.get("remove") or []]


@strawberry.type(description="a contact variable was saved (action variable_set)")
class VariableSet(Step):
    @strawberry.field
    def field(self) -> str:
        return str(self._detail.get("field"))

    @strawberry.field
    def value(self) -> JSON | None:
        return plain(self._detail.get("value"))

    @strawberry.field(description="the external system the value is also sent to (klaviyo), if any")
    def external_provider(self) -> str | None:
        return _text((self._detail.get("external") or {}).get("provider"))


@strawberry.interface(
    description="an answer did not fit its field (outcome INVALID_VALUE): nothing of it was saved, and the "
    "question is asked again while retries are left"
)
class InvalidValue(Step):
    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))

    @strawberry.field(description="the node asked again (the question answered, or the form), when it is")
    def asking_again(self) -> str | None:
        return _text(self._detail.get("asking_again"))

    @strawberry.field(description="which retry this is, when the question is asked again")
    def attempt(self) -> int | None:
        value = self._detail.get("attempt")
        return int(value) if isinstance(value, int) else None


@strawberry.type(description="a value did not fit its field (action variable_not_set, outcome INVALID_VALUE)")
class VariableNotSet(InvalidValue):
    @strawberry.field
    def field(self) -> str:
        return str(self._detail.get("field"))

    @strawberry.field
    def value(self) -> JSON | None:
        return plain(self._detail.get("value"))


@strawberry.type(description="an agent took the conversation (action assigned)")
class Assigned(Step):
    @strawberry.field
    def assigned_agent_id(self) -> strawberry.ID | None:
        return self._detail.get("agent_id")

    @strawberry.field(description="the agent (null if deleted since)")
    async def assigned_agent(self, info: TenantInfo) -> Agent | None:
        agent_id = self._detail.get("agent_id")
        found = await loaders(info).agents.load((self.workspace_id, str(agent_id))) if agent_id else None
        return Agent.of(found) if found else None

    @strawberry.field(description="the team the node asked for, if any")
    def team(self) -> str | None:
        return _text(self._detail.get("team"))


@strawberry.type(description="no agent could take the conversation (action not_assigned)")
class NotAssigned(Step):
    @strawberry.field(description="the agent the node asked for, if any")
    def requested_agent(self) -> str | None:
        return _text(self._detail.get("agent"))

    @strawberry.field
    def team(self) -> str | None:
        return _text(self._detail.get("team"))

    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))


@strawberry.type(description="a condition chose a branch (action condition)")
class ConditionChecked(Step):
    @strawberry.field(description="the branch's name; null when none matched (otherwise)")
    def branch(self) -> str | None:
        return _text(self._detail.get("branch"))


@strawberry.type(description="an A/B split chose a branch, or kept the contact's earlier one (action split)")
class SplitChosen(Step):
    @strawberry.field(description="the branch's name (also the step's outcome)")
    def branch(self) -> str | None:
        return _text(self._detail.get("branch"))

    @strawberry.field(description="true when the contact kept the branch it had drawn before (sticky)")
    def kept(self) -> bool | None:
        kept = self._detail.get("kept")
        return bool(kept) if kept is not None else None

    @strawberry.field(description="whether the split keeps each contact in its branch on re-entry")
    def sticky(self) -> bool | None:
        sticky = self._detail.get("sticky")
        return bool(sticky) if sticky is not None else None


@strawberry.type(description="a delay started, or had already passed (action delay)")
class DelayStarted(Step):
    @strawberry.field
    def until(self) -> datetime | None:
        return _moment(self._detail.get("until"))


@strawberry.type(description="a delay's time came (action timer)")
class TimerFired(Step):
    pass


@strawberry.type(description="the customer did not answer in time: the no_reply path (action no_reply)")
class NoReplyFired(Step):
    pass


@strawberry.type(description="the run handed over to another flow (action connect_flow)")
class FlowConnected(Step):
    @strawberry.field(description="the name of the flow it connected to")
    def flow_name(self) -> str | None:
        return _text(self._detail.get("flow"))


@strawberry.type(description="the run ended; outcome is its status (action ended)")
class RunEnded(Step):
    @strawberry.field(description="completed, connected, superseded, WINDOW_CLOSED, SEND_FAILED:<code>...")
    def reason(self) -> str | None:
        return _text(self._detail.get("reason"))


@strawberry.type(description="the flow looped without a wait and was stopped (action spin_stopped)")
class SpinStopped(Step):
    @strawberry.field
    def why(self) -> str | None:
        return _text(self._detail.get("why"))


@strawberry.type(
    description="a value was sent to an external profile, or failed to be (action external_sync)"
)
class ExternalSynced(Step):
    @strawberry.field
    def provider(self) -> str | None:
        return _text(self._detail.get("provider"))

    @strawberry.field
    def property(self) -> str | None:
        return _text(self._detail.get("property"))

    @strawberry.field
    def field(self) -> str:
        return str(self._detail.get("field"))

    @strawberry.field
    def error(self) -> str | None:
        return _text(self._detail.get("error"))

    @strawberry.field
    def retry_at(self) -> datetime | None:
        return _moment(self._detail.get("retry_at"))


@strawberry.type(description="a shared location answered a location request (action location)")
class LocationShared(Step):
    @strawberry.field(description="the location the customer shared")
    def location(self) -> MessageLocation | None:
        return MessageLocation.of(self._detail.get("location"))

    @strawberry.field(description="the contact fields saved from it, by field name")
    def saved(self) -> JSON | None:
        return plain(self._detail.get("saved"))


@strawberry.type(description="a WhatsApp Flow's answer fitted its fields and was saved (action form_saved)")
class FormSaved(Step):
    @strawberry.field(description="the form's answer as sent, without its token")
    def answer(self) -> JSON | None:
        return plain(self._detail.get("answer"))

    @strawberry.field(description="the contact fields saved, by field name")
    def saved(self) -> JSON | None:
        return plain(self._detail.get("saved"))


@strawberry.type(
    description="a WhatsApp Flow's answer did not fit its fields; nothing of it was saved "
    "(action form_not_saved, outcome INVALID_VALUE)"
)
class FormNotSaved(InvalidValue):
    @strawberry.field(description="the form's answer as sent, without its token")
    def answer(self) -> JSON | None:
        return plain(self._detail.get("answer"))

    @strawberry.field(description="each value that did not fit: field, form_field, value, why")
    def problems(self) -> JSON | None:
        return plain(self._detail.get("problems"))


@strawberry.type(description="a step of an action this version has no type for: read action and detail")
class OtherStep(Step):
    pass


STEP_TYPES: dict[str, type[Step]] = {
    "started": RunStarted,
    "not_started": RunNotStarted,
    "button": ButtonPressed,
    "reply": Replied,
    "reply_held": ReplyHeld,
    "reply_not_understood": ReplyNotUnderstood,
    "message_sent": MessageSent,
    "template_sent": TemplateSent,
    "message_not_sent": MessageNotSent,
    "template_not_sent": TemplateNotSent,
    "message_status": MessageStatusChanged,
    "opted_in": OptedIn,
    "tagged": Tagged,
    "variable_set": VariableSet,
    "variable_not_set": VariableNotSet,
    "assigned": Assigned,
    "not_assigned": NotAssigned,
    "condition": ConditionChecked,
    "split": SplitChosen,
    "delay": DelayStarted,
    "timer": TimerFired,
    "no_reply": NoReplyFired,
    "connect_flow": FlowConnected,
    "ended": RunEnded,
    "spin_stopped": SpinStopped,
    "external_sync": ExternalSynced,
    "location": LocationShared,
    "form_saved": FormSaved,
    "form_not_saved": FormNotSaved,
}
# Every step type, for the schema (types reached only through the interface must be listed).
ALL_STEP_TYPES: tuple[type[Step], ...] = tuple(dict.fromkeys([*STEP_TYPES.values(), SendFailed, OtherStep]))


def step_of(doc: dict[str, Any], workspace_id: str) -> Step:
    """The typed step of a stored one (``OtherStep`` for an action without a type)."""
    kind = STEP_TYPES.get(str(doc.get("action")), OtherStep)
    if kind is MessageStatusChanged and doc.get("outcome") == "failed":
        kind = SendFailed
    return kind(doc=doc, workspace_id=workspace_id)
