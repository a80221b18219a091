"""The ``params`` of a template node: what fills a template's header, body and buttons.

Typed so a wrong shape is refused when the flow is saved (``INVALID_FLOW`` naming the node),
never sent as text; the shapes older drafts used are read and normalised. How params fill a
given template is ``template_message.resolve_template``. Documented in docs/templates.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

# Union members are tagged so a wrong shape reports the member it was read as; ``parse_flow``
# drops these tags from the location it shows.
_AS_OBJECT = "<object>"
_AS_VALUE = "<value>"
UNION_TAGS = (_AS_OBJECT, _AS_VALUE)
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        if value is None:
            return {}
        if not isinstance(value, dict | BaseModel):
            raise ValueError('params is an object: {"header": .., "body": [..], "buttons": [..]}')
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
