"""Outbox message dicts (``server.machines.runner``) -> Graph API ``/messages`` request bodies.

What WhatsApp would refuse is refused here first with a ``PayloadError`` that says what to fix:
a request Meta answers with an error costs a round trip, a throughput slot and sometimes money,
and Meta's messages ("(#100) Invalid parameter") do not name the node that caused them.

Outbox kinds: ``text`` {text}; ``media`` {media: {kind, url, caption, filename}, text?};
``buttons`` {text, buttons: [{id, title}], media?}; ``list`` {text, list: {button, sections:
[{title?, rows: [{id, title, description?}]}]}}; ``template`` {template: {name, language,
params}, buttons: [{id, title}]}: ``params`` in the flow document's typed form (docs/templates.md),
placeholders already rendered; quick replies carry the node's button ids.
"""

from __future__ import annotations

import re
from typing import Any

from server.machines.template_message import resolve_template

# WhatsApp's limits (Cloud API message reference).
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_INTERACTIVE_BODY = 1024
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_LIST_ROWS = 10
MAX_LIST_SECTIONS = 10
MAX_LIST_BUTTON = 20
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_ROW_ID = 200
MAX_SECTION_TITLE = 24
MEDIA_KINDS = ("image", "video", "audio", "document")
CAPTIONED = ("image", "video", "document")
_LINK = re.compile(r"https?://", re.IGNORECASE)


class PayloadError(Exception):
    """A message WhatsApp would refuse; permanent for that message (``code`` goes on the run step)."""

    def __init__(self, message: str, code: str = "INVALID_MESSAGE") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def recipient(phone: str) -> str:
    """Meta's ``to``: the E.164 number without ``+`` (the same digits Meta reports as ``wa_id``)."""
    return phone.lstrip("+")


def build(message: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body for one outbox message; ``template`` is the stored template for kind template."""
    kind = message.get("kind", "text")
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": recipient(message["to"])}
    if kind == "text":
        return {**base, "type": "text", "text": _text(message.get("text"))}
    if kind == "media":
        media = message.get("media") or {}
        media_kind = _media_kind(media)
        return {**base, "type": media_kind, media_kind: _media(media, message.get("text"))}
    if kind == "buttons":
        return {**base, "type": "interactive", "interactive": _buttons(message)}
    if kind == "list":
        return {**base, "type": "interactive", "interactive": _list(message)}
    if kind == "template":
        if template is None:
            raise PayloadError("template message without its template document", "TEMPLATE_MISSING")
        return {**base, "type": "template", "template": template_object(message, template)}
    raise PayloadError(f"unknown message kind {kind!r}")


# --- simple messages ------------------------------------------------------------------------------


def _text(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise PayloadError("a text message needs some text")
    if len(text) > MAX_TEXT:
        raise PayloadError(f"a text message is at most {MAX_TEXT} characters (this one has {len(text)})")
    return {"body": text, "preview_url": bool(_LINK.search(text))}


def _media_kind(media: dict[str, Any]) -> str:
    kind = media.get("kind")
    if kind not in MEDIA_KINDS:
        raise PayloadError(f"media kind must be one of {', '.join(MEDIA_KINDS)}, not {kind!r}")
    return str(kind)


def _link(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise PayloadError(f"{what} needs an http(s) URL WhatsApp can download, not {url!r}")
    return url


def _media(media: dict[str, Any], text: Any) -> dict[str, Any]:
    kind = _media_kind(media)
    body: dict[str, Any] = {"link": _link(media.get("url"), f"the {kind}")}
    caption = media.get("caption") or (text if isinstance(text, str) and text.strip() else None)
    if caption:
        if kind not in CAPTIONED:
            raise PayloadError(
                "WhatsApp does not show a caption or text with audio; put the text in its own message"
            )
        if len(caption) > MAX_CAPTION:
            raise PayloadError(f"a media caption is at most {MAX_CAPTION} characters")
        body["caption"] = caption
    if media.get("filename"):
        if kind != "document":
            raise PayloadError("only documents have a filename")
        body["filename"] = str(media["filename"])
    return body


def _body_text(message: dict[str, Any]) -> str:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        caption = (message.get("media") or {}).get("caption")
        text = caption if isinstance(caption, str) else ""
    if not text.strip():
        raise PayloadError("a message with buttons or a list needs text above them")
    if len(text) > MAX_INTERACTIVE_BODY:
        raise PayloadError(f"the text of a message with buttons is at most {MAX_INTERACTIVE_BODY} characters")
    return text


def _unique(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise PayloadError(f"{what} must be different from each other")


def _buttons(message: dict[str, Any]) -> dict[str, Any]:
    buttons = message.get("buttons") or []
    if not 1 <= len(buttons) <= MAX_REPLY_BUTTONS:
        raise PayloadError(f"WhatsApp shows 1 to {MAX_REPLY_BUTTONS} reply buttons, not {len(buttons)}")
    replies: list[dict[str, Any]] = []
    for button in buttons:
        button_id = str(button.get("id") or "")
        title = str(button.get("title") or button_id)
        if not button_id or len(button_id) > MAX_BUTTON_ID or button_id != button_id.strip():
            raise PayloadError(
                f"button id {button_id!r} must be 1-{MAX_BUTTON_ID} characters, no outer spaces"
            )
        if not title.strip() or len(title) > MAX_BUTTON_TITLE:
            raise PayloadError(f"button title {title!r} must be 1-{MAX_BUTTON_TITLE} characters")
        replies.append({"type": "reply", "reply": {"id": button_id, "title": title}})
    _unique([r["reply"]["id"] for r in replies], "button ids")
    _unique([r["reply"]["title"] for r in replies], "button titles")
    interactive: dict[str, Any] = {
        "type": "button",
        "body": {"text": _body_text(message)},
        "action": {"buttons": replies},
    }
    media = message.get("media")
    if media:
        kind = _media_kind(media)
        if kind not in CAPTIONED:
            raise PayloadError("a message with buttons can show an image, video or document, not audio")
        header: dict[str, Any] = {"link": _link(media.get("url"), f"the {kind}")}
        if kind == "document" and media.get("filename"):
            header["filename"] = str(media["filename"])
        interactive["header"] = {"type": kind, kind: header}
    return interactive


def _list(message: dict[str, Any]) -> dict[str, Any]:
    spec = message.get("list") or {}
    label = str(spec.get("button") or "")
    if not label.strip() or len(label) > MAX_LIST_BUTTON:
        raise PayloadError(f"a list needs a button label of 1-{MAX_LIST_BUTTON} characters")
    sections = spec.get("sections") or ([{"rows": spec["rows"]}] if spec.get("rows") else [])
    if not 1 <= len(sections) <= MAX_LIST_SECTIONS:
        raise PayloadError(f"a list has 1 to {MAX_LIST_SECTIONS} sections")
    out_sections = []
    ids: list[str] = []
    for section in sections:
        rows = []
        for row in section.get("rows") or []:
            row_id, title = str(row.get("id") or ""), str(row.get("title") or "")
            if not row_id or len(row_id) > MAX_ROW_ID:
                raise PayloadError(f"list row id {row_id!r} must be 1-{MAX_ROW_ID} characters")
            if not title.strip() or len(title) > MAX_ROW_TITLE:
                raise PayloadError(f"list row title {title!r} must be 1-{MAX_ROW_TITLE} characters")
            item = {"id": row_id, "title": title}
            if row.get("description"):
                if len(row["description"]) > MAX_ROW_DESCRIPTION:
                    raise PayloadError(f"a list row description is at most {MAX_ROW_DESCRIPTION} characters")
                item["description"] = str(row["description"])
            rows.append(item)
            ids.append(row_id)
        if not rows:
            raise PayloadError("every list section needs at least one row")
        out: dict[str, Any] = {"rows": rows}
        title = section.get("title")
        if title:
            if len(title) > MAX_SECTION_TITLE:
                raise PayloadError(f"a list section title is at most {MAX_SECTION_TITLE} characters")
            out["title"] = str(title)
        elif len(sections) > 1:
            raise PayloadError("a list with several sections needs a title on each")
        out_sections.append(out)
    if len(ids) > MAX_LIST_ROWS:
        raise PayloadError(f"a list has at most {MAX_LIST_ROWS} rows in all (this one has {len(ids)})")
    _unique(ids, "list row ids")
    return {
        "type": "list",
        "body": {"text": _body_text(message)},
        "action": {"button": label, "sections": out_sections},
    }


# --- templates ------------------------------------------------------------------------------------


def template_object(message: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """Meta's ``template`` object: name, language and the components that carry parameters.

    How params fill the template is ``server.machines.template_message`` (shared with the flow
    validator and the sandbox); here the result becomes Meta's components.
    """
    spec = message.get("template") or {}
    name = template["name"]
    resolved = resolve_template(
        template.get("components") or [],
        spec.get("params"),
        [str(b.get("id")) for b in message.get("buttons") or []],
    )
    if resolved.problems:
        more = f" (and {len(resolved.problems) - 1} more)" if len(resolved.problems) > 1 else ""
        raise PayloadError(f"template {name!r}: {resolved.problems[0]}{more}", "TEMPLATE_PARAMS")
    components: list[dict[str, Any]] = []
    header = resolved.header
    if header is not None and header.parameter is not None:
        components.append({"type": "header", "parameters": [{"type": "text", "text": header.parameter}]})
    elif header is not None and header.media_kind is not None and header.media_url is not None:
        kind = header.media_kind
        media: dict[str, Any] = {"link": _link(header.media_url, f"the {kind} header of {name!r}")}
        if header.filename:
            media["filename"] = header.filename
        components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
    if resolved.body_parameters:
        components.append(
            {"type": "body", "parameters": [{"type": "text", "text": v} for v in resolved.body_parameters]}
        )
    for button in resolved.buttons:
        if button.kind == "QUICK_REPLY" and button.payload is not None:
            # the reply's payload maps back to the node's button
            parameter = {"type": "payload", "payload": button.payload}
            components.append(_button_component("quick_reply", button.index, parameter))
        elif button.kind == "URL" and button.suffix is not None:
            parameter = {"type": "text", "text": button.suffix}
            components.append(_button_component("url", button.index, parameter))
        elif button.kind == "COPY_CODE" and button.coupon_code is not None:
            parameter = {"type": "coupon_code", "coupon_code": button.coupon_code}
            components.append(_button_component("copy_code", button.index, parameter))
    result: dict[str, Any] = {
        "name": name,
        "language": {"policy": "deterministic", "code": template["language"]},
    }
    if components:
        result["components"] = components
    return result


def _button_component(sub_type: str, index: int, parameter: dict[str, Any]) -> dict[str, Any]:
    return {"type": "button", "sub_type": sub_type, "index": str(index), "parameters": [parameter]}
