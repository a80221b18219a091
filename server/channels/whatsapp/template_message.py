"""A template and a node's ``params`` resolved into the message the customer sees.

One home for how parameters fill a template, read three ways: the flow validator (do a node's
params fit its template, in the node's language), the WhatsApp payload builder (Meta's
``components``) and the sandbox renderer (header, body, footer and buttons as WhatsApp shows
them). ``components`` are the template's stored components in Meta's format (``HEADER``,
``BODY``, ``FOOTER``, ``BUTTONS``), as synced from Meta or created through ``createTemplate``.

Resolution never raises: what does not fit is listed in ``problems`` (each sentence names the
part and says what to write), and the result keeps whatever could be filled, so a renderer can
still show a message and the builder refuses to send one with problems.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from server.channels.whatsapp.template_params import TemplateButtonParam, TemplateHeaderParam, TemplateParams

# Meta's review statuses a template can be sent in: FLAGGED is a quality warning, still sent;
# PAUSED, DISABLED and the unapproved ones are not.
SENDABLE_TEMPLATE_STATUSES = ("APPROVED", "FLAGGED")
# Meta's limits on a template's buttons: in all, and of the kinds that take a value.
MAX_TEMPLATE_BUTTONS = 10
MAX_TEMPLATE_BUTTONS_BY_TYPE = {"URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1}
PARAM = re.compile(r"\{\{\s*(\d+)\s*\}\}")
MAX_COUPON = 15  # Meta: a copy code is at most 15 characters
HEADER_MEDIA = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
_BAD_VALUE = re.compile(r"[\n\t]| {5,}")  # Meta refuses these in template parameters
_KIND_NAMES = {
    "QUICK_REPLY": "quick-reply",
    "URL": "URL",
    "PHONE_NUMBER": "phone-call",
    "COPY_CODE": "copy-code",
}


@dataclass(frozen=True)
class ResolvedHeader:
    format: str  # TEXT | IMAGE | VIDEO | DOCUMENT | LOCATION
    text: str | None = None  # TEXT: as shown, its parameter filled in
    parameter: str | None = None  # TEXT: the value of its {{1}}, when it has one
    media_kind: str | None = None  # image | video | document
    media_url: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class ResolvedButton:
    index: int  # position in the template, from 0 (Meta's index)
    kind: str  # QUICK_REPLY | URL | PHONE_NUMBER | COPY_CODE
    title: str | None  # the label; None for COPY_CODE (WhatsApp labels it in the customer's language)
    url: str | None = None  # URL: the full address, its suffix filled in
    suffix: str | None = None  # URL: the parameter of a dynamic URL
    phone_number: str | None = None
    coupon_code: str | None = None
    payload: str | None = None  # QUICK_REPLY: what a tap sends back (the node's button id)
    node_button: str | None = None  # QUICK_REPLY: the id of the node's button that answers it


@dataclass(frozen=True)
class ResolvedTemplate:
    header: ResolvedHeader | None
    body: str  # as shown, parameters filled in (a missing one stays {{n}})
    body_parameters: tuple[str, ...]
    footer: str | None
    buttons: tuple[ResolvedButton, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def parameter_count(text: str | None) -> int:
    """How many parameters a component text takes: its highest ``{{n}}``."""
    return max((int(n) for n in PARAM.findall(text or "")), default=0)


def resolve_template(
    components: Sequence[dict[str, Any]],
    params: TemplateParams | dict[str, Any] | None,
    node_buttons: Sequence[str] = (),
    *,
    placeholders: bool = False,
) -> ResolvedTemplate:
    """Fill ``components`` with ``params``; ``node_buttons`` answer the quick replies in order.

    With ``placeholders`` (checking a flow document) values may still hold ``{{contact.x}}``
    placeholders: their content is only known at run time, so only their presence is checked.
    """
    problems: list[str] = []
    parsed = _parse(params, problems)
    by_type = {str(c.get("type") or "").upper(): c for c in components}
    check = _ValueCheck(problems, placeholders)
    header = _header(by_type.get("HEADER"), parsed.header, check)
    body_text = str((by_type.get("BODY") or {}).get("text") or "")
    wanted = parameter_count(body_text)
    if len(parsed.body) != wanted:
        problems.append(
            f"it has {wanted} body parameter(s){_numbered(wanted)} but params.body gives "
            f"{len(parsed.body)}: give one value per {{{{n}}}}, in order"
        )
    for position, value in enumerate(parsed.body):
        check(value, f"body parameter {{{{{position + 1}}}}}")
    buttons = _buttons(
        list((by_type.get("BUTTONS") or {}).get("buttons") or []), parsed.buttons, node_buttons, check
    )
    footer = (by_type.get("FOOTER") or {}).get("text")
    return ResolvedTemplate(
        header=header,
        body=_fill(body_text, parsed.body),
        body_parameters=tuple(parsed.body),
        footer=str(footer) if footer else None,
        buttons=tuple(buttons),
        problems=tuple(problems),
    )


def _parse(params: TemplateParams | dict[str, Any] | None, problems: list[str]) -> TemplateParams:
    if isinstance(params, TemplateParams):
        return params
    try:
        return TemplateParams.model_validate(params or {})
    except ValidationError as exc:  # e.g. an outbox message queued before params were typed
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"] if not str(p).startswith("<"))
        problems.append(f"params{'.' + where if where else ''}: {error['msg'].removeprefix('Value error, ')}")
        return TemplateParams()


def _numbered(count: int) -> str:
    if count == 0:
        return ""
    return " ({{1}})" if count == 1 else f" ({{{{1}}}} to {{{{{count}}}}})"


def _fill(text: str, values: Sequence[str]) -> str:
    def value(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return values[number - 1] if 0 < number <= len(values) else match.group(0)

    return PARAM.sub(value, text)


class _ValueCheck:
    """Meta's rules for one parameter value; placeholder values are checked at run time."""

    def __init__(self, problems: list[str], placeholders: bool) -> None:
        self.problems = problems
        self.placeholders = placeholders

    def dynamic(self, value: str) -> bool:
        return self.placeholders and "{{" in value

    def __call__(self, value: str, where: str, limit: int | None = None) -> None:
        if self.dynamic(value):
            return
        if not value.strip():
            self.problems.append(f"{where} is empty; WhatsApp refuses empty template parameters")
        elif _BAD_VALUE.search(value):
            self.problems.append(
                f"{where} has a new line, a tab or more than 4 spaces in a row; WhatsApp refuses it"
            )
        elif limit is not None and len(value) > limit:
            self.problems.append(f"{where} is {len(value)} characters; WhatsApp allows at most {limit}")

    def link(self, value: str, where: str) -> None:
        if self.dynamic(value):
            return
        if not value.lower().startswith(("https://", "http://")):
            self.problems.append(f"{where} must be an http(s) URL WhatsApp can download, not {value!r}")


# --- header ---------------------------------------------------------------------------------------


def _header(
    component: dict[str, Any] | None, given: TemplateHeaderParam | str | None, check: _ValueCheck
) -> ResolvedHeader | None:
    problems = check.problems
    if component is None:
        if given is not None:
            problems.append("the template has no header: remove params.header")
        return None
    header_format = str(component.get("format") or "TEXT").upper()
    if header_format == "TEXT":
        text = str(component.get("text") or "")
        wanted = parameter_count(text) > 0
        value = given.text if isinstance(given, TemplateHeaderParam) else given
        if isinstance(given, TemplateHeaderParam) and given.url is not None:
            problems.append(f"its header is text ({text!r}): give params.header its text, not media")
        elif wanted and value is None:
            problems.append(
                f'its header {text!r} takes a header parameter: set params.header to its value, e.g. "A-17"'
            )
        elif not wanted and value is not None:
            problems.append(f"its header {text!r} has no parameter: remove params.header")
        if wanted and value is not None:
            check(value, "the header parameter")
            return ResolvedHeader("TEXT", text=_fill(text, [value]), parameter=value)
        return ResolvedHeader("TEXT", text=text)
    kind = HEADER_MEDIA.get(header_format)
    if kind is None:
        problems.append(f"its {header_format} header cannot be sent yet; use a template without it")
        return ResolvedHeader(header_format)
    if isinstance(given, TemplateHeaderParam) and given.text is not None:
        problems.append(f"its header is {_article(kind)} {kind}: give params.header the media URL, not text")
        return ResolvedHeader(header_format, media_kind=kind)
    url = given.url if isinstance(given, TemplateHeaderParam) else given
    if url is None:
        problems.append(
            f"its header is {_article(kind)} {kind}: give params.header the media URL, e.g. "
            f'{{"kind": "{kind}", "url": "https://…"}}'
        )
        return ResolvedHeader(header_format, media_kind=kind)
    filename = given.filename if isinstance(given, TemplateHeaderParam) else None
    if isinstance(given, TemplateHeaderParam) and given.kind not in (None, kind):
        other = given.kind
        problems.append(
            f"its header is {_article(kind)} {kind}, but params.header gives {_article(other)} {other}"
        )
    if filename is not None and kind != "document":
        problems.append(f"its header is {_article(kind)} {kind}: only a document header has a filename")
    check.link(url, f"the {kind} of the header")
    return ResolvedHeader(header_format, media_kind=kind, media_url=url, filename=filename)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# --- buttons --------------------------------------------------------------------------------------


@dataclass
class _Given:
    value: str
    kind: str | None  # None: a bare value, whatever the button takes
    label: str  # how the author wrote it, for messages


def _dynamic(button: dict[str, Any]) -> bool:
    kind = str(button.get("type") or "").upper()
    return kind == "COPY_CODE" or (kind == "URL" and PARAM.search(str(button.get("url") or "")) is not None)


def _describe(index: int, button: dict[str, Any]) -> str:
    kind = str(button.get("type") or "").upper()
    title = button.get("text")
    named = f" ({title!r})" if title else ""
    return f"{_KIND_NAMES.get(kind, kind.lower())} button {index}{named}"


def _assign(
    buttons: list[dict[str, Any]],
    given: Sequence[TemplateButtonParam | str],
    node_buttons: Sequence[str],
    problems: list[str],
) -> dict[int, _Given]:
    """Which template button each parameter is for: by ``index``, else the next that takes it."""
    assigned: dict[int, _Given] = {}
    positional: list[_Given] = []
    for number, item in enumerate(given, start=1):
        if isinstance(item, str):
            positional.append(_Given(item, None, f"button parameter {number} ({item!r})"))
            continue
        entry = _Given(item.value, item.kind, f"button parameter {number}")
        if item.index is None:
            positional.append(entry)
        elif item.index >= len(buttons):
            count = len(buttons)
            have = f"{count} button(s), index 0 to {count - 1}" if count else "no buttons"
            problems.append(f"params.buttons names button index {item.index}, but the template has {have}")
        elif item.index in assigned:
            problems.append(f"params.buttons gives button index {item.index} twice")
        else:
            assigned[item.index] = entry
    answered = _answered_quick_replies(buttons, node_buttons)
    surplus = 0
    for entry in positional:
        target = next(
            (
                i
                for i, button in enumerate(buttons)
                if i not in assigned and _takes(button, entry.kind, i in answered)
            ),
            None,
        )
        if target is None:
            surplus += 1
        else:
            assigned[target] = entry
    if surplus:
        problems.append(
            f"params.buttons gives {surplus} value(s) more than the template's buttons take "
            "(only dynamic URL and copy-code buttons take one)"
        )
    return assigned


def _takes(button: dict[str, Any], kind: str | None, answered: bool) -> bool:
    """Whether a parameter without an index (of ``kind``, or bare) goes to ``button``."""
    button_kind = str(button.get("type") or "").upper()
    if kind is None:
        return _dynamic(button)
    if kind == "QUICK_REPLY":
        return button_kind == "QUICK_REPLY" and not answered
    return button_kind == kind and _dynamic(button)


def _answered_quick_replies(buttons: list[dict[str, Any]], node_buttons: Sequence[str]) -> dict[int, str]:
    """Template index -> the node button answering it (the node's buttons map to quick replies in order)."""
    quick = [i for i, b in enumerate(buttons) if str(b.get("type") or "").upper() == "QUICK_REPLY"]
    return dict(zip(quick, node_buttons, strict=False))


def _buttons(
    buttons: list[dict[str, Any]],
    given: Sequence[TemplateButtonParam | str],
    node_buttons: Sequence[str],
    check: _ValueCheck,
) -> list[ResolvedButton]:
    problems = check.problems
    assigned = _assign(buttons, given, node_buttons, problems)
    answered = _answered_quick_replies(buttons, node_buttons)
    resolved = []
    for index, button in enumerate(buttons):
        kind = str(button.get("type") or "").upper()
        entry = assigned.get(index)
        what = _describe(index, button)
        if entry is not None and entry.kind not in (None, kind):
            problems.append(
                f"{what} takes no {_KIND_NAMES.get(entry.kind, entry.kind)} parameter, "
                f"but {entry.label} gives one for index {index}"
            )
            entry = None
        title = button.get("text")
        if kind == "QUICK_REPLY":
            node_button = answered.get(index)
            payload = node_button
            if entry is not None and node_button is not None:
                problems.append(
                    f"{what} is answered by the node's button {node_button!r}, whose id is its "
                    "payload: remove the payload from params.buttons"
                )
            elif entry is not None:
                check(entry.value, f"the payload of {what}")
                payload = entry.value
            resolved.append(ResolvedButton(index, kind, title, payload=payload, node_button=node_button))
        elif kind == "URL":
            url = str(button.get("url") or "")
            if not _dynamic(button):
                if entry is not None:
                    problems.append(f"{what} opens a fixed address ({url}); it takes no parameter")
                resolved.append(ResolvedButton(index, kind, title, url=url))
                continue
            if entry is None:
                problems.append(
                    f"{what} opens {url}: it needs its URL suffix, e.g. "
                    f'{{"index": {index}, "url": "order/123"}} in params.buttons'
                )
                resolved.append(ResolvedButton(index, kind, title, url=url))
                continue
            suffix = entry.value
            check(suffix, f"the URL suffix of {what}")
            filled = PARAM.sub(lambda _: suffix, url)  # noqa: B023 (used at once, inside the loop)
            resolved.append(ResolvedButton(index, kind, title, url=filled, suffix=suffix))
        elif kind == "COPY_CODE":
            if entry is None:
                problems.append(
                    f"{what} needs its code, e.g. "
                    f'{{"index": {index}, "coupon_code": "SAVE10"}} in params.buttons'
                )
                resolved.append(ResolvedButton(index, kind, None))
                continue
            check(entry.value, f"the code of {what}", MAX_COUPON)
            resolved.append(ResolvedButton(index, kind, None, coupon_code=entry.value))
        else:
            if entry is not None:
                problems.append(f"{what} takes no parameter: remove it from params.buttons")
            resolved.append(
                ResolvedButton(
                    index, kind, title, phone_number=button.get("phone_number"), url=button.get("url")
                )
            )
    return resolved
