"""The flow document (API.md "Flow documents") as pydantic models, parsed with node-level errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.channels.whatsapp.template_params import UNION_TAGS, TemplateParams
from server.durations import parse_duration
from server.errors import InvalidFlow


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Button(_Model):
    id: str = Field(min_length=1)
    title: str | None = None
    next: str | None = None
    # Rows of a message sent as a list (docs/flows.md "Lists"): a line under the title, and the
    # titled section the row is shown in.
    description: str | None = None
    section: str | None = None


class NoReply(_Model):
    after: str
    next: str | None = None

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class Media(_Model):
    kind: Literal["image", "video", "audio", "document"]
    url: str = Field(min_length=1)
    caption: str | None = None
    filename: str | None = None


# --- interactive options of a simple message (docs/flows.md "Interactive messages") ----------

LIST_AFTER = 3  # WhatsApp shows up to 3 reply buttons; more become a list


class Link(_Model):
    """A CTA URL button: a tap opens ``url`` (placeholders allowed); nothing comes back."""

    title: str = Field(min_length=1)
    url: str = Field(min_length=1)


class LocationFields(_Model):
    """Which contact field gets each part of the location the customer shares."""

    latitude: str | None = None
    longitude: str | None = None
    name: str | None = None
    address: str | None = None


class LocationRequest(_Model):
    """Ask for the customer's location: the pin's parts go into ``save``, then the run follows ``next``."""

    save: LocationFields = Field(default_factory=LocationFields)
    next: str | None = None


class CarouselCard(_Model):
    """One card of a media carousel: an image or video, a short text, and a link or quick replies."""

    media: Media
    text: str | None = None
    link: Link | None = None
    buttons: list[Button] = Field(default_factory=list)


class _Node(_Model):
    id: str = Field(min_length=1)
    next: str | None = None


class _MessageLike(_Node):
    buttons: list[Button] = Field(default_factory=list)
    on_reply: str | None = None
    # Where typed text goes that matches no button, when there is no on_reply (docs/flows.md).
    on_other: str | None = None
    no_reply: NoReply | None = None
    on_failure: str | None = None

    @property
    def waits(self) -> bool:
        """A message node waits when something can answer it (API.md)."""
        return (
            any(b.next is not None for b in self.buttons)
            or self.on_reply is not None
            or self.on_other is not None
            or self.no_reply is not None
        )


class MessageNode(_MessageLike):
    type: Literal["message"]
    text: str | None = None
    media: Media | None = None
    # Interactive options (docs/flows.md "Interactive messages"): at most one kind per message.
    list_button: str | None = None  # the label of the button that opens a list
    link: Link | None = None
    location_request: LocationRequest | None = None
    carousel: list[CarouselCard] = Field(default_factory=list)

    @property
    def as_list(self) -> bool:
        """Sent as a list: more buttons than WhatsApp shows as buttons, or list-only options."""
        return (
            len(self.buttons) > LIST_AFTER
            or self.list_button is not None
            or any(b.description is not None or b.section is not None for b in self.buttons)
        )

    @property
    def choices(self) -> list[Button]:
        """Every button the customer can tap, in the order shown: the node's, then each card's."""
        return [*self.buttons, *(b for card in self.carousel for b in card.buttons)]

    @property
    def waits(self) -> bool:
        return (
            super().waits
            or any(b.next is not None for card in self.carousel for b in card.buttons)
            or self.location_request is not None
        )


class TemplateNode(_MessageLike):
    type: Literal["template"]
    template: str = Field(min_length=1)
    language: str = "es"
    params: TemplateParams = Field(default_factory=TemplateParams)  # docs/templates.md


class OptInNode(_Node):
    type: Literal["opt_in"]


class TagNode(_Node):
    type: Literal["tag"]
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class ValueSource(_Model):
    """Where a ``set_variable`` value comes from: fixed ``value``, ``reply``, ``button`` or ``var``."""

    from_: Literal["value", "reply", "button", "variable"] = Field("value", alias="from")
    value: Any = None
    var: str | None = None


class SetVariableNode(_Node):
    """Save a typed contact variable; ``on_invalid`` is where a value that does not fit goes.

    ``retries``: how many times a reply that does not fit is answered by asking the question
    again before ``on_invalid`` runs (or the run ends with ``INVALID_VALUE``).
    """

    type: Literal["set_variable"]
    field: str = Field(min_length=1)
    value: ValueSource | str | int | float | bool | None = None
    on_invalid: str | None = None
    retries: int = Field(2, ge=0, le=10)

    def source(self) -> ValueSource:
        if isinstance(self.value, ValueSource):
            return self.value
        return ValueSource.model_validate({"value": self.value})


class AssignNode(_Node):
    type: Literal["assign"]
    agent: str | None = None
    team: str | None = None
    strategy: Literal["round_robin", "least_busy"] = "round_robin"


class Branch(_Model):
    name: str
    segment: dict[str, Any]
    next: str | None = None


class ConditionNode(_Node):
    type: Literal["condition"]
    branches: list[Branch] = Field(default_factory=list)
    otherwise: str | None = None


class DelayNode(_Node):
    type: Literal["delay"]
    for_: str | None = Field(None, alias="for")
    until: str | None = None

    @field_validator("for_")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class ConnectFlowNode(_Node):
    type: Literal["connect_flow"]
    flow: str = Field(min_length=1)


# --- A/B split (docs/flows.md "A/B split") ------------------------------------------------------


class SplitBranch(_Model):
    """One arm of a split: its name (what analytics show), its relative weight, where it leads."""

    name: str
    weight: float = 1.0
    next: str | None = None


class SplitNode(_Node):
    """Weighted random branches. ``sticky`` (the default): a contact that comes back to this node,
    in this run or a later one, takes the branch it was given the first time (stored on the
    contact); ``sticky: false`` draws again on every entry."""

    type: Literal["split"]
    branches: list[SplitBranch] = Field(default_factory=list)
    sticky: bool = True


# --- end of A/B split ---------------------------------------------------------------------------
# --- WhatsApp Flows (docs/flows.md "WhatsApp Flows") ------------------------------------------


class WhatsAppFlowNode(_Node):
    """Send a WhatsApp Flow (an in-chat form) and wait for its answer.

    The answer (``nfm_reply``) fills typed contact fields: ``fields`` maps a form field (a key of
    the answer) to a contact field, each value read like any typed reply. An answer that does not
    fit is asked again (the form is sent again) ``retries`` times, then ``on_invalid`` runs (or
    the run ends with ``INVALID_VALUE``); a valid one is saved and the run follows ``next``.
    Typed text instead of the form follows ``on_other`` when set; silence, ``no_reply``.
    """

    type: Literal["whatsapp_flow"]
    text: str = Field(min_length=1)
    flow_id: str = Field(min_length=1)
    screen: str = Field(min_length=1)
    cta: str = Field(min_length=1)
    data: dict[str, Any] | None = None  # what the first screen shows; string values take placeholders
    mode: Literal["published", "draft"] = "published"
    fields: dict[str, str] = Field(default_factory=dict)
    retries: int = Field(2, ge=0, le=10)
    on_invalid: str | None = None
    on_other: str | None = None
    no_reply: NoReply | None = None
    on_failure: str | None = None

    @property
    def waits(self) -> bool:
        return True


# Nodes that send something the customer answers (the reply rules, no-reply timers, failed sends).
AnsweredNode = MessageNode | TemplateNode | WhatsAppFlowNode
# Nodes that send a free-form message: they need the 24-hour window open.
SimpleMessageNode = MessageNode | WhatsAppFlowNode


Node = Annotated[
    MessageNode
    | TemplateNode
    | OptInNode
    | TagNode
    | SetVariableNode
    | AssignNode
    | ConditionNode
    | DelayNode
    | ConnectFlowNode
    | SplitNode
    | WhatsAppFlowNode,
    Field(discriminator="type"),
]
NODE_TYPES = (
    "template",
    "message",
    "opt_in",
    "tag",
    "set_variable",
    "assign",
    "condition",
    "delay",
    "connect_flow",
    "split",
    "whatsapp_flow",
)


class FlowSettings(_Model):
    """Per-flow behaviour knobs.

    ``supersede`` ends an older interactive run when this one starts; ``runs_while_assigned``
    lets the flow start for a contact an agent owns (order confirmations), which every other
    flow skips with ``CONTACT_WITH_AGENT``. ``transactional``: the flow sends what the customer
    is waiting for (an order confirmation, a delivery notice), so quiet hours never hold its
    messages (docs/sending.md).
    """

    supersede: bool = True
    runs_while_assigned: bool = False
    transactional: bool = False


class FlowDefinition(_Model):
    name: str = Field(min_length=1)
    start: str | None = None
    description: str | None = None
    nodes: list[Node] = Field(default_factory=list)
    settings: FlowSettings = Field(default_factory=FlowSettings)

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)


def parse_flow(document: Any) -> FlowDefinition:
    """Parse a flow document; the first problem is raised naming its node id and field."""
    if not isinstance(document, dict):
        raise InvalidFlow("a flow definition must be a JSON object with name, start and nodes")
    try:
        return FlowDefinition.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = list(error["loc"])
        node_id = None
        if len(location) >= 2 and location[0] == "nodes" and isinstance(location[1], int):
            nodes = document.get("nodes") or []
            raw = nodes[location[1]] if location[1] < len(nodes) else None
            node_id = raw.get("id") if isinstance(raw, dict) else None
            location = location[2:]
            if location and location[0] in NODE_TYPES:
                location = location[1:]
        location = [p for p in location if p not in UNION_TAGS]
        where = ".".join(str(p) for p in location) or "node"
        prefix = f"node {node_id!r}: " if node_id else ""
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_invalid":
            message = f"unknown node type; use one of {', '.join(NODE_TYPES)}"
        raise InvalidFlow(f"{prefix}{where}: {message}", node_id=node_id, field=where) from None
