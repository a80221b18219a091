"""The flow document (API.md "Flow documents") as pydantic models, parsed with node-level errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.errors import InvalidFlow
from server.machines.durations import parse_duration
from server.machines.template_params import UNION_TAGS, TemplateParams


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Button(_Model):
    id: str = Field(min_length=1)
    title: str | None = None
    next: str | None = None


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
    | SplitNode,
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
