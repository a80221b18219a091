"""Outbox message dicts (``server.machines.runner``) -> Graph API ``/messages`` request bodies.

What WhatsApp would refuse is refused here first with a ``PayloadError`` that says what to fix:
a request Meta answers with an error costs a round trip, a throughput slot and sometimes money,
and Meta's messages ("(#100) Invalid parameter") do not name the node that caused them.

Outbox kinds: ``text`` {text}; ``media`` {media: {kind, url, caption, filename}, text?};
``buttons`` {text, buttons: [{id, title}], media?}; ``list`` {text, list: {button, sections:
[{title?, rows: [{id, title, description?}]}]}}; ``cta_url`` {text, link: {title, url}, media?};
``location_request`` {text}; ``carousel`` {text, cards: [{media: {kind, url}, text?, link? |
buttons?}]}; ``flow`` {text, flow: {id, screen, cta, token, mode, data?}}; ``template``
{template: {name, language, params}, buttons: [{id, title}]}: ``params`` in the flow document's
typed form (docs/templates.md), placeholders already rendered; quick replies carry the node's
button ids. The limits are WhatsApp's (``server/channels/whatsapp/message_limits.py``).
"""

from __future__ import annotations

import re
from typing import Any

from server.channels.whatsapp.message_limits import (
    CAROUSEL_MEDIA,
    FLOW_MESSAGE_VERSION,
    HEADER_MEDIA,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_CAPTION,
    MAX_CARD_BODY,
    MAX_CARD_BODY_LINE_BREAKS,
    MAX_CARD_REPLIES,
    MAX_CAROUSEL_CARDS,
    MAX_FLOW_CTA,
    MAX_INTERACTIVE_BODY,
    MAX_LINK_TITLE,
    MAX_LIST_BUTTON,
    MAX_LIST_ROWS,
    MAX_LIST_SECTIONS,
    MAX_REPLY_BUTTONS,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_SECTION_TITLE,
    MAX_TEXT,
    MIN_CAROUSEL_CARDS,
)
from server.channels.whatsapp.template_message import resolve_template

MEDIA_KINDS = ("image", "video", "audio", "document")
CAPTIONED = HEADER_MEDIA
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


def addressee(message: dict[str, Any]) -> dict[str, str]:
    """Who the request names: ``to`` (the phone) when known, else ``recipient`` (the BSUID).

    Meta takes ``to`` when a request has both and recommends phone numbers where known; a BSUID
    is all there is for a customer who adopted a username and withheld their number. Some
    messages cannot go to a BSUID (one-tap, zero-tap and copy-code authentication templates):
    Meta answers 131062, a permanent failure like any other (server/channels/whatsapp/errors.py).
    """
    if message.get("to"):
        return {"to": recipient(str(message["to"]))}
    if message.get("bsuid"):
        return {"recipient": str(message["bsuid"])}
    raise PayloadError("the contact has neither a phone number nor a BSUID to send to", "NO_RECIPIENT")


def build(message: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body for one outbox message; ``template`` is the stored template for kind template."""
    kind = message.get("kind", "text")
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", **addressee(message)}
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
    if kind in INTERACTIVE_KINDS:
        return {**base, "type": "interactive", "interactive": INTERACTIVE_KINDS[kind](message)}
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
        raise PayloadError("an interactive message (buttons, a list, a link, a form...) needs text")
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
        interactive["header"] = _media_header(media, "a message with buttons")
    return interactive


def _media_header(media: dict[str, Any], what: str) -> dict[str, Any]:
    """An interactive message's media header: an image, a video or a document (never audio)."""
    kind = _media_kind(media)
    if kind not in HEADER_MEDIA:
        raise PayloadError(f"{what} can show an image, video or document, not audio")
    header: dict[str, Any] = {"link": _link(media.get("url"), f"the {kind}")}
    if kind == "document" and media.get("filename"):
        header["filename"] = str(media["filename"])
    return {"type": kind, kind: header}


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


# --- CTA URL, location request, media carousel, WhatsApp Flow ------------------------------------


def _url_action(link: Any, what: str) -> dict[str, Any]:
    """A URL button's action (a CTA URL message, a carousel card): its label and where it goes."""
    if not isinstance(link, dict):
        raise PayloadError(f"{what} needs a link with a title and a url")
    title = str(link.get("title") or "")
    if not title.strip() or len(title) > MAX_LINK_TITLE:
        raise PayloadError(f"{what}: the link's title {title!r} must be 1-{MAX_LINK_TITLE} characters")
    url = _link(link.get("url"), f"{what}'s link")
    return {"name": "cta_url", "parameters": {"display_text": title, "url": url}}


def _cta_url(message: dict[str, Any]) -> dict[str, Any]:
    interactive: dict[str, Any] = {
        "type": "cta_url",
        "body": {"text": _body_text(message)},
        "action": _url_action(message.get("link"), "a link message"),
    }
    if message.get("media"):
        interactive["header"] = _media_header(message["media"], "a link message")
    return interactive


def _location_request(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "location_request_message",
        "body": {"text": _body_text(message)},
        "action": {"name": "send_location"},
    }


def _carousel(message: dict[str, Any]) -> dict[str, Any]:
    cards = message.get("cards") or []
    if not MIN_CAROUSEL_CARDS <= len(cards) <= MAX_CAROUSEL_CARDS:
        raise PayloadError(
            f"a carousel has {MIN_CAROUSEL_CARDS} to {MAX_CAROUSEL_CARDS} cards, not {len(cards)}"
        )
    out = [_card(card, index) for index, card in enumerate(cards)]
    shapes = {(c["header"]["type"], c["type"], len(c["action"].get("buttons") or [])) for c in out}
    if len(shapes) > 1:
        raise PayloadError(
            "every card of a carousel shows the same kind of media and the same buttons "
            "(one link, or the same number of quick replies)"
        )
    ids = [b["quick_reply"]["id"] for card in out for b in card["action"].get("buttons") or []]
    _unique(ids, "the quick-reply ids of a carousel")
    return {"type": "carousel", "body": {"text": _body_text(message)}, "action": {"cards": out}}


def _card(card: dict[str, Any], index: int) -> dict[str, Any]:
    where = f"carousel card {index + 1}"
    media = card.get("media") or {}
    kind = media.get("kind")
    if kind not in CAROUSEL_MEDIA:
        raise PayloadError(f"{where} needs an image or a video, not {kind!r}")
    out: dict[str, Any] = {
        "card_index": index,
        "header": {"type": kind, kind: {"link": _link(media.get("url"), f"the {kind} of {where}")}},
    }
    text = card.get("text")
    if isinstance(text, str) and text.strip():
        if len(text) > MAX_CARD_BODY or text.count("\n") > MAX_CARD_BODY_LINE_BREAKS:
            raise PayloadError(
                f"{where}: its text is at most {MAX_CARD_BODY} characters and "
                f"{MAX_CARD_BODY_LINE_BREAKS} line breaks"
            )
        out["body"] = {"text": text}
    buttons = card.get("buttons") or []
    if card.get("link") and buttons:
        raise PayloadError(f"{where} has a link and quick replies; a card has one or the other")
    if card.get("link"):
        out["type"] = "cta_url"
        out["action"] = _url_action(card["link"], where)
        return out
    if not 1 <= len(buttons) <= MAX_CARD_REPLIES:
        raise PayloadError(f"{where} needs a link or 1 to {MAX_CARD_REPLIES} quick replies")
    replies = []
    for button in buttons:
        button_id, title = str(button.get("id") or ""), str(button.get("title") or button.get("id") or "")
        if not button_id or len(button_id) > MAX_BUTTON_ID or button_id != button_id.strip():
            raise PayloadError(f"{where}: button id {button_id!r} must be 1-{MAX_BUTTON_ID} characters")
        if not title.strip() or len(title) > MAX_BUTTON_TITLE:
            raise PayloadError(f"{where}: button title {title!r} must be 1-{MAX_BUTTON_TITLE} characters")
        replies.append({"type": "quick_reply", "quick_reply": {"id": button_id, "title": title}})
    out["type"] = "button"
    out["action"] = {"buttons": replies}
    return out


def _flow(message: dict[str, Any]) -> dict[str, Any]:
    spec = message.get("flow") or {}
    flow_id = str(spec.get("id") or "")
    if not flow_id.isdigit():
        raise PayloadError(f"a WhatsApp Flow is sent by its numeric id, not {flow_id!r}")
    cta = str(spec.get("cta") or "")
    if not cta.strip() or len(cta) > MAX_FLOW_CTA:
        raise PayloadError(f"a WhatsApp Flow's button text {cta!r} must be 1-{MAX_FLOW_CTA} characters")
    screen = str(spec.get("screen") or "")
    if not screen.strip():
        raise PayloadError("a WhatsApp Flow needs the id of the screen it opens on")
    payload: dict[str, Any] = {"screen": screen}
    if spec.get("data"):
        payload["data"] = spec["data"]
    parameters: dict[str, Any] = {
        "flow_message_version": FLOW_MESSAGE_VERSION,
        "flow_id": flow_id,
        "flow_cta": cta,
        "flow_action": "navigate",
        "flow_action_payload": payload,
    }
    if spec.get("token"):
        parameters["flow_token"] = str(spec["token"])
    if spec.get("mode") == "draft":
        parameters["mode"] = "draft"
    return {
        "type": "flow",
        "body": {"text": _body_text(message)},
        "action": {"name": "flow", "parameters": parameters},
    }


INTERACTIVE_KINDS = {
    "cta_url": _cta_url,
    "location_request": _location_request,
    "carousel": _carousel,
    "flow": _flow,
}


# --- templates ------------------------------------------------------------------------------------


def template_object(message: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """Meta's ``template`` object: name, language and the components that carry parameters.

    How params fill the template is ``server.channels.whatsapp.template_message`` (shared with the flow
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
