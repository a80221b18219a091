"""The flow document (API.md "Flow documents") as pydantic models, parsed with node-level errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from server.errors import InvalidFlow
from server.machines.durations import parse_duration


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
    no_reply: NoReply | None = None
    on_failure: str | None = None

    @property
    def waits(self) -> bool:
        """A message node waits when something can answer it (API.md)."""
        return (
            any(b.next is not None for b in self.buttons)
            or self.on_reply is not None
            or self.no_reply is not None
        )


class MessageNode(_MessageLike):
    type: Literal["message"]
    text: str | None = None
    media: Media | None = None


# --- template parameters (docs/templates.md) -------------------------------------------------------
# Union members are tagged so a wrong shape reports the member it was read as; ``parse_flow``
# drops these tags from the location it shows.
_AS_OBJECT = "<object>"
_AS_VALUE = "<value>"
MAX_TEMPLATE_BUTTON_INDEX = 9  # Meta: at most 10 buttons, indexed from 0


def _scalar_text(value: Any) -> Any:
    """Numbers written without quotes are text parameters too (``"body": [42]``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _json_kind(value: Any) -> str:
    """How a JSON value is called in an error message (not Python's type names)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "text"


def _object_or_value(value: Any) -> str:
    return _AS_OBJECT if isinstance(value, dict | BaseModel) else _AS_VALUE


def _exactly_one(model: BaseModel, names: tuple[str, ...], what: str) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        choices = ", ".join(repr(n) for n in names)
        found = f" (it has {', '.join(repr(n) for n in given)})" if given else ""
        raise ValueError(f"{what} takes exactly one of {choices}{found}")


class TemplateHeaderParam(_Model):
    """A header parameter: ``{"text": ..}`` for a TEXT header with ``{{1}}``, or its media.

    ``kind`` may be left out: the template's header format says it. Old drafts wrote media as
    ``{"link": url}``; that is read as ``url``.
    """

    text: str | None = None
    kind: Literal["image", "video", "document"] | None = None
    url: str | None = None
    filename: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_link(cls, value: Any) -> Any:
        if isinstance(value, dict) and "link" in value and "url" not in value:
            value = {("url" if k == "link" else k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TemplateHeaderParam:
        _exactly_one(self, ("text", "url"), "a header parameter")
        if self.text is not None and (self.kind is not None or self.filename is not None):
            raise ValueError("a text header parameter has no 'kind' or 'filename'")
        if self.filename is not None and self.kind not in (None, "document"):
            raise ValueError("only a document header has a 'filename'")
        return self


class TemplateButtonParam(_Model):
    """The parameter of one template button: a dynamic URL's suffix, a copy code or a payload.

    ``index`` is the button's position in the template (from 0, as Meta counts); without it the
    parameter goes to the next button of its kind, in template order.
    """

    index: int | None = Field(None, ge=0, le=MAX_TEMPLATE_BUTTON_INDEX)
    url: str | None = None
    coupon_code: str | None = None
    payload: str | None = None

    @field_validator("url", "coupon_code", "payload", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _scalar_text(value)

    @model_validator(mode="after")
    def _one_parameter(self) -> TemplateButtonParam:
        _exactly_one(self, ("url", "coupon_code", "payload"), "a button parameter")
        return self

    @property
    def kind(self) -> str:
        """The template button type this parameter is for."""
        if self.url is not None:
            return "URL"
        return "COPY_CODE" if self.coupon_code is not None else "QUICK_REPLY"

    @property
    def value(self) -> str:
        return next(v for v in (self.url, self.coupon_code, self.payload) if v is not None)


HeaderParam = Annotated[
    Annotated[TemplateHeaderParam, Tag(_AS_OBJECT)] | Annotated[str, Tag(_AS_VALUE)],
    Discriminator(_object_or_value),
]
ButtonParam = Annotated[
    Annotated[TemplateButtonParam, Tag(_AS_OBJECT)] | Annotated[str, Tag(_AS_VALUE)],
    Discriminator(_object_or_value),
]


class TemplateParams(_Model):
    """What fills a template's variables; checked against the template at validation.

    ``header``: text, or ``{"text"}`` / ``{"kind", "url", "filename"}``; a bare value is whatever
    the template's header takes (its text parameter or its media URL). ``body``: one value per
    ``{{n}}``. ``buttons``: ``{"index", "url" | "coupon_code" | "payload"}`` objects; a bare
    value fills the next URL-suffix or copy-code button in template order (the old shape).
    """

    header: HeaderParam | None = None
    body: list[str] = Field(default_factory=list)
    buttons: list[ButtonParam] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _known_parts(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(str(k) for k in value if k not in ("header", "body", "buttons"))
            if unknown:
                raise ValueError(
                    f"unknown part {', '.join(repr(k) for k in unknown)}: params has 'header', 'body' "
                    "and 'buttons' (a footer and fixed texts take no parameters)"
                )
        return value

    @field_validator("header", mode="before")
    @classmethod
    def _one_header(cls, value: Any) -> Any:
        if isinstance(value, list):  # old drafts: a list holding the one header value
            if len(value) != 1:
                raise ValueError(f"a template has one header: give one value, not {len(value)}")
            value = value[0]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float | dict | BaseModel)
        ):
            raise ValueError('give the header\'s text, or its media as {"kind": "image", "url": "https://…"}')
        return _scalar_text(value)

    @field_validator("body", mode="before")
    @classmethod
    def _body_values(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        for position, item in enumerate(values):
            if not isinstance(_scalar_text(item), str):
                raise ValueError(
                    f"body value {position + 1} is {_json_kind(item)}; each {{{{n}}}} of the body "
                    "takes text (placeholders such as {{contact.first_name}} are welcome)"
                )
        return [_scalar_text(item) for item in values]

    @field_validator("buttons", mode="before")
    @classmethod
    def _button_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError(
                'give a list of button parameters, e.g. [{"index": 1, "url": "order/123"}, '
                '{"index": 2, "coupon_code": "SAVE10"}]'
            )
        values = value if isinstance(value, list) else [value]
        for position, item in enumerate(values):
            if not isinstance(_scalar_text(item), str | dict | BaseModel):
                raise ValueError(
                    f"button parameter {position + 1} is {_json_kind(item)}; give "
                    '{"index": <button position>, "url" | "coupon_code" | "payload": <text>}'
                )
        return [_scalar_text(item) for item in values]

    def mapped(self, change: Callable[[str], str]) -> TemplateParams:
        """The same parameters with every value passed through ``change`` (placeholder rendering)."""
        header = self.header
        if isinstance(header, str):
            header = change(header)
        elif header is not None:
            field = "text" if header.text is not None else "url"
            header = header.model_copy(update={field: change(getattr(header, field))})
        buttons: list[TemplateButtonParam | str] = []
        for button in self.buttons:
            if isinstance(button, str):
                buttons.append(change(button))
            else:
                field = {"URL": "url", "COPY_CODE": "coupon_code"}.get(button.kind, "payload")
                buttons.append(button.model_copy(update={field: change(button.value)}))
        return TemplateParams(header=header, body=[change(v) for v in self.body], buttons=buttons)

    def stored(self) -> dict[str, Any]:
        """The JSON form (what an outbox message carries): only the parts given."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class TemplateNode(_MessageLike):
    type: Literal["template"]
    template: str = Field(min_length=1)
    language: str = "es"
    params: TemplateParams = Field(default_factory=TemplateParams)

    @field_validator("params", mode="before")
    @classmethod
    def _params_object(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict | BaseModel):
            raise ValueError('params is an object: {"header": .., "body": [..], "buttons": [..]}')
        return value


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
    """Save a typed contact variable; ``on_invalid`` is where a value that does not fit goes."""

    type: Literal["set_variable"]
    field: str = Field(min_length=1)
    value: ValueSource | str | int | float | bool | None = None
    on_invalid: str | None = None

    def source(self) -> ValueSource:
        if isinstance(self.value, ValueSource):
            return self.value
        return ValueSource(value=self.value)


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


Node = Annotated[
    MessageNode
    | TemplateNode
    | OptInNode
    | TagNode
    | SetVariableNode
    | AssignNode
    | ConditionNode
    | DelayNode
    | ConnectFlowNode,
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
)


class FlowSettings(_Model):
    """Per-flow behaviour knobs; ``supersede`` ends an older interactive run when this one starts."""

    supersede: bool = True


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
        location = [p for p in location if p not in (_AS_OBJECT, _AS_VALUE)]
        where = ".".join(str(p) for p in location) or "node"
        prefix = f"node {node_id!r}: " if node_id else ""
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_invalid":
            message = f"unknown node type; use one of {', '.join(NODE_TYPES)}"
        raise InvalidFlow(f"{prefix}{where}: {message}", node_id=node_id, field=where) from None
