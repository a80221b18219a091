"""What the customer sees for an outbound message, worked out once when the message is queued.

WhatsApp shows a template as its header (text with its parameter, or the image/video/document),
its body with the parameters filled in, its footer, and its buttons: quick replies (a tap answers
with the button), URL, call and copy-code buttons (a tap opens, dials or copies; nothing comes
back). With more than 3 buttons it shows them as a list. The outbox message only names the
template and carries the node's parameters, so the sandbox outbox, ``konvo chat`` and the inbox
would each have to look the template up and fill it in; instead ``render_message`` stores the
result on the message (``rendered``), and all three show that.

``rendered``: ``{"header": {"kind": "TEXT"|"IMAGE"|..., "text"|"url"|"filename"}, "body",
"footer", "buttons": [{"kind": "QUICK_REPLY"|"URL"|"CALL"|"COPY_CODE"|"LOCATION_REQUEST"|"FLOW"|
"OTHER", "title", "id", "number", "url", "phone_number", "code", "description", "section"}],
"as_list", "list_button", "cards": [{"header", "body", "buttons"}]}`` with empty parts left out.
``id`` is what a tap sends back (the node's button id) and ``number`` what a customer may type
instead; only quick replies (list rows, carousel cards' quick replies) have them, numbered in
the order shown. A customer's message is rendered too: what they sent (a location, a reaction,
a form's answer, a contact card...) as a line of text with its media as the header.
"""

from __future__ import annotations

from typing import Any

from server.channels.whatsapp.template_message import ResolvedButton, ResolvedHeader, resolve_template

TemplateKey = tuple[str, str]  # (template name, language); language "" = any language of that name
LIST_AFTER = 3  # WhatsApp shows more buttons than this as a list
# WhatsApp labels copy-code buttons itself, in the template's language.
_COPY_LABELS = {"es": "Copiar código", "pt": "Copiar código", "fr": "Copier le code", "it": "Copia codice"}


def find_template(
    templates: dict[TemplateKey, dict[str, Any]], name: str, language: str
) -> dict[str, Any] | None:
    return templates.get((name, language)) or templates.get((name, ""))


def render_message(
    message: dict[str, Any], templates: dict[TemplateKey, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The message as WhatsApp shows it; ``templates`` holds the workspace's template documents."""
    if message.get("direction") == "in":
        return _inbound(message)
    kind = message.get("kind") or "text"
    if kind == "template":
        spec = message.get("template") or {}
        template = find_template(templates or {}, str(spec.get("name")), str(spec.get("language") or ""))
        return _template(spec, message.get("buttons") or [], template)
    media = message.get("media") or None
    header = None
    body = message.get("text")
    if media:
        header = _compact(
            {
                "kind": str(media.get("kind") or "image").upper(),
                "url": media.get("url"),
                "filename": media.get("filename"),
            }
        )
        body = body or media.get("caption")
    if kind == "list":
        spec = message.get("list") or {}
        sections = spec.get("sections") or [{"rows": spec.get("rows") or []}]
        buttons: list[dict[str, Any]] = []
        for section in sections:
            for row in section.get("rows") or []:
                button = _reply(str(row.get("id")), str(row.get("title") or row.get("id")), len(buttons) + 1)
                button.update(
                    _compact({"description": row.get("description"), "section": section.get("title")})
                )
                buttons.append(button)
        shown = {"header": header, "body": body, "buttons": buttons, "as_list": True}
        return _compact({**shown, "list_button": spec.get("button")})
    if kind in _INTERACTIVE:
        return _compact({"header": header, "body": body, **_INTERACTIVE[kind](message)})
    buttons = [
        _reply(str(b.get("id")), str(b.get("title") or b.get("id")), n)
        for n, b in enumerate(message.get("buttons") or [], start=1)
    ]
    return _compact(
        {"header": header, "body": body, "buttons": buttons, "as_list": len(buttons) > LIST_AFTER}
    )


# --- interactive simple messages: link, location request, carousel, WhatsApp Flow ---------------


def _cta_url(message: dict[str, Any]) -> dict[str, Any]:
    link = message.get("link") or {}
    return {"buttons": [{"kind": "URL", "title": str(link.get("title") or ""), "url": link.get("url")}]}


def _location_request(message: dict[str, Any]) -> dict[str, Any]:
    return {"buttons": [{"kind": "LOCATION_REQUEST", "title": "Send location"}]}


def _flow(message: dict[str, Any]) -> dict[str, Any]:
    return {"buttons": [{"kind": "FLOW", "title": str((message.get("flow") or {}).get("cta") or "")}]}


def _carousel(message: dict[str, Any]) -> dict[str, Any]:
    """Each card as a small message; quick replies are numbered across the cards, in order."""
    cards = []
    number = 0
    for card in message.get("cards") or []:
        media = card.get("media") or {}
        buttons: list[dict[str, Any]] = []
        for button in card.get("buttons") or []:
            number += 1
            buttons.append(
                _reply(str(button.get("id")), str(button.get("title") or button.get("id")), number)
            )
        if card.get("link"):
            buttons += _cta_url(card)["buttons"]
        header = {"kind": str(media.get("kind") or "image").upper(), "url": media.get("url")}
        cards.append(_compact({"header": header, "body": card.get("text"), "buttons": buttons}))
    return {"cards": cards}


_INTERACTIVE = {
    "cta_url": _cta_url,
    "location_request": _location_request,
    "flow": _flow,
    "carousel": _carousel,
}


# --- what customers send ------------------------------------------------------------------------


def _inbound(message: dict[str, Any]) -> dict[str, Any]:
    """A customer's message as a line of text (and its media as the header), whatever its kind."""
    kind = message.get("kind") or "text"
    media = message.get("media") or {}
    header = None
    if media:
        header = _compact({"kind": str(media.get("kind") or kind).upper(), "filename": media.get("filename")})
    body = message.get("text") or message.get("button_id") or media.get("caption")
    if kind == "location":
        body = _location_line(message.get("location") or {})
    elif kind == "reaction":
        emoji = (message.get("reaction") or {}).get("emoji")
        body = f"reacted {emoji}" if emoji else "removed a reaction"
    elif kind == "contacts":
        body = "shared " + "; ".join(_contact_line(card) for card in message.get("contacts") or [])
    elif kind == "nfm_reply":
        body = _form_line(message.get("form") or {})
    elif kind == "sticker":
        body = body or "sent a sticker"
    elif body is None and kind not in ("text", "button") and not media:
        errors = message.get("errors") or []
        why = (
            (errors[0].get("title") or errors[0].get("message"))
            if errors and isinstance(errors[0], dict)
            else None
        )
        shown = "a message WhatsApp does not pass on" if kind == "unsupported" else f"a {kind} message"
        body = f"sent {shown}" + (f" ({why})" if why else "")
    return _compact({"header": header, "body": body})


def _location_line(location: dict[str, Any]) -> str:
    place = ", ".join(str(location[k]) for k in ("name", "address") if location.get(k))
    where = f"({location.get('latitude')}, {location.get('longitude')})"
    return f"shared a location: {place} {where}" if place else f"shared a location {where}"


def _contact_line(card: dict[str, Any]) -> str:
    name = (card.get("name") or {}).get("formatted_name") if isinstance(card.get("name"), dict) else None
    phones = [p.get("phone") for p in card.get("phones") or [] if isinstance(p, dict) and p.get("phone")]
    return " ".join(str(part) for part in (name or "a contact", *phones))


def _form_line(form: dict[str, Any]) -> str:
    response = form.get("response")
    if not isinstance(response, dict):
        return "sent a form that could not be read"
    fields = [f"{key}: {value}" for key, value in response.items() if key != "flow_token"]
    return "sent the form: " + ", ".join(fields) if fields else "sent the form"


def _template(
    spec: dict[str, Any], node_buttons: list[dict[str, Any]], template: dict[str, Any] | None
) -> dict[str, Any]:
    """A template message as shown, filled by ``resolve_template`` (the one home of how params fill
    a template): what cannot be filled stays visible as ``{{n}}``, a message is still shown."""
    name, language = str(spec.get("name")), str(spec.get("language") or "")
    if template is None:  # not in this workspace (any more): show what is known
        params = spec.get("params") or {}
        shown = [str(v) for v in params.get("body") or []] if isinstance(params, dict) else []
        body = f"[template {name} ({language}) not found] " + " · ".join(shown)
        buttons = [_reply(str(b.get("id")), str(b.get("id")), n) for n, b in enumerate(node_buttons, 1)]
        return _compact({"body": body.strip(), "buttons": buttons, "as_list": len(buttons) > LIST_AFTER})
    resolved = resolve_template(
        template.get("components") or [], spec.get("params"), [str(b.get("id")) for b in node_buttons]
    )
    buttons = [_button(button, language) for button in resolved.buttons]
    number = 0
    for button in buttons:
        if button["kind"] == "QUICK_REPLY":
            number += 1
            button["number"] = number
    return _compact(
        {
            "header": _header(resolved.header),
            "body": resolved.body or None,
            "footer": resolved.footer,
            "buttons": buttons,
            "as_list": len(buttons) > LIST_AFTER,
        }
    )


def _header(header: ResolvedHeader | None) -> dict[str, Any] | None:
    if header is None:
        return None
    if header.format == "TEXT":
        return {"kind": "TEXT", "text": header.text or ""}
    return _compact({"kind": header.format, "url": header.media_url, "filename": header.filename})


def _button(button: ResolvedButton, language: str) -> dict[str, Any]:
    """A template button as shown; quick replies carry what a tap sends back (the node's button id,
    else the title, as WhatsApp answers without a payload)."""
    title = button.title or ""
    if button.kind == "QUICK_REPLY":
        return {"kind": "QUICK_REPLY", "title": title, "id": button.node_button or button.payload or title}
    if button.kind == "URL":
        return {"kind": "URL", "title": title, "url": button.url or ""}
    if button.kind == "PHONE_NUMBER":
        return {"kind": "CALL", "title": title, "phone_number": button.phone_number}
    if button.kind == "COPY_CODE":
        label = title or _COPY_LABELS.get(language.split("_")[0].split("-")[0], "Copy code")
        return _compact({"kind": "COPY_CODE", "title": label, "code": button.coupon_code})
    return {"kind": "OTHER", "title": title or button.kind}


def plain_text(rendered: dict[str, Any]) -> str:
    """The message as lines of text (``konvo chat`` prints this): ``*header*``, body, ``_footer_``,
    then ``[1] Title`` per quick reply and ``[link]``/``[call]``/``[copy]`` lines for the others;
    a list (more than 3 buttons) is numbered ``1. Title`` under "See all options:"."""
    lines: list[str] = []
    header = rendered.get("header") or {}
    if header.get("kind") == "TEXT" and header.get("text"):
        lines.append(f"*{header['text']}*")
    elif header.get("kind"):
        shown = " ".join(str(p) for p in (header.get("url"), header.get("filename")) if p)
        lines.append(f"[{str(header['kind']).lower()}] {shown}".rstrip())
    if rendered.get("body"):
        lines += str(rendered["body"]).splitlines() or [""]
    if rendered.get("footer"):
        lines.append(f"_{rendered['footer']}_")
    as_list = bool(rendered.get("as_list"))
    if as_list and rendered.get("buttons"):
        label = rendered.get("list_button")
        lines.append(f"[{label}]" if label else "See all options:")
    section = None
    for button in rendered.get("buttons") or []:
        if as_list and button.get("section") and button["section"] != section:
            section = button["section"]
            lines.append(f"*{section}*")
        lines.append(_button_line(button, as_list))
    for number, card in enumerate(rendered.get("cards") or [], 1):
        card_lines = plain_text(card).splitlines() or [""]
        lines.append(f"Card {number}: {card_lines[0]}")
        lines += [f"  {line}" for line in card_lines[1:]]
    return "\n".join(lines)


def _button_line(button: dict[str, Any], as_list: bool) -> str:
    kind, title = button.get("kind"), button.get("title") or ""
    if kind == "QUICK_REPLY" and button.get("number"):
        about = f" — {button['description']}" if button.get("description") else ""
        return f"{button['number']}. {title}{about}" if as_list else f"[{button['number']}] {title}"
    detail = {"URL": button.get("url"), "CALL": button.get("phone_number"), "COPY_CODE": button.get("code")}
    tag = {
        "URL": "link",
        "CALL": "call",
        "COPY_CODE": "copy",
        "QUICK_REPLY": "reply",
        "LOCATION_REQUEST": "location",
        "FLOW": "form",
    }.get(str(kind), "button")
    value = detail.get(str(kind))
    suffix = f": {value}" if value else ""
    return f"- {title}{suffix} ({tag})" if as_list else f"[{tag}] {title}{suffix}"


def _reply(button_id: str, title: str, number: int) -> dict[str, Any]:
    return {"kind": "QUICK_REPLY", "title": title, "id": button_id, "number": number}


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty parts (stored on every message: keep it small)."""
    return {k: v for k, v in document.items() if v not in (None, "", [], False)}
