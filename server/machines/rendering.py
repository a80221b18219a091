"""What the customer sees for an outbound message, worked out once when the message is queued.

WhatsApp shows a template as its header (text with its parameter, or the image/video/document),
its body with the parameters filled in, its footer, and its buttons: quick replies (a tap answers
with the button), URL, call and copy-code buttons (a tap opens, dials or copies; nothing comes
back). With more than 3 buttons it shows them as a list. The outbox message only names the
template and carries the node's parameters, so the sandbox outbox, ``konvo chat`` and the inbox
would each have to look the template up and fill it in; instead ``render_message`` stores the
result on the message (``rendered``), and all three show that.

``rendered``: ``{"header": {"kind": "TEXT"|"IMAGE"|..., "text"|"url"|"filename"}, "body",
"footer", "buttons": [{"kind": "QUICK_REPLY"|"URL"|"CALL"|"COPY_CODE"|"OTHER", "title", "id",
"number", "url", "phone_number", "code"}], "as_list"}`` with empty parts left out. ``id`` is what
a tap sends back (the node's button id) and ``number`` what a customer may type instead; only
quick replies have them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TemplateKey = tuple[str, str]  # (template name, language); language "" = any language of that name
LIST_AFTER = 3  # WhatsApp shows more buttons than this as a list
_PARAM = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_MEDIA = ("IMAGE", "VIDEO", "DOCUMENT", "AUDIO")
_BUTTON_KINDS = {"QUICK_REPLY": "QUICK_REPLY", "URL": "URL", "PHONE_NUMBER": "CALL", "COPY_CODE": "COPY_CODE"}
# WhatsApp labels copy-code buttons itself, in the template's language.
_COPY_LABELS = {"es": "Copiar código", "pt": "Copiar código", "fr": "Copier le code", "it": "Copia codice"}


@dataclass
class TemplateValues:
    """A template node's parameters, once placeholders are filled: what fills which part."""

    header: Any = None  # text, or media: a URL or {"link"/"url", "filename"}
    body: list[str] | dict[str, str] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)  # URL suffixes and copy codes, in button order


def template_values(params: Any) -> TemplateValues:
    """Read a template node's ``params`` (``{"header", "body", "buttons"}``, each a list or a value).

    The one place that knows their shape: a button value may be text or an object naming its
    text (``{"text"|"code"|"coupon_code"|"suffix": ...}``).
    """
    if not isinstance(params, dict):
        return TemplateValues()
    header = params.get("header")
    if isinstance(header, list):
        header = header[0] if header else None
    body = params.get("body")
    if isinstance(body, dict):
        body_values: list[str] | dict[str, str] = {str(k): _text(v) for k, v in body.items()}
    else:
        body_values = [_text(v) for v in _as_list(body)]
    buttons = [_button_value(v) for v in _as_list(params.get("buttons"))]
    return TemplateValues(header=header, body=body_values, buttons=buttons)


def find_template(
    templates: dict[TemplateKey, dict[str, Any]], name: str, language: str
) -> dict[str, Any] | None:
    return templates.get((name, language)) or templates.get((name, ""))


def render_message(
    message: dict[str, Any], templates: dict[TemplateKey, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The message as WhatsApp shows it; ``templates`` holds the workspace's template documents."""
    if message.get("direction") == "in":
        return _compact({"body": message.get("text") or message.get("button_id")})
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
        rows = [row for section in sections for row in section.get("rows") or []]
        buttons = [
            _reply(str(r.get("id")), str(r.get("title") or r.get("id")), n) for n, r in enumerate(rows, 1)
        ]
        return _compact({"header": header, "body": body, "buttons": buttons, "as_list": True})
    buttons = [
        _reply(str(b.get("id")), str(b.get("title") or b.get("id")), n)
        for n, b in enumerate(message.get("buttons") or [], start=1)
    ]
    return _compact(
        {"header": header, "body": body, "buttons": buttons, "as_list": len(buttons) > LIST_AFTER}
    )


def _template(
    spec: dict[str, Any], node_buttons: list[dict[str, Any]], template: dict[str, Any] | None
) -> dict[str, Any]:
    values = template_values(spec.get("params"))
    name, language = str(spec.get("name")), str(spec.get("language") or "")
    if template is None:  # not in this workspace (any more): show what is known
        shown = values.body if isinstance(values.body, list) else list(values.body.values())
        body = f"[template {name} ({language}) not found] " + " · ".join(shown)
        buttons = [_reply(str(b.get("id")), str(b.get("id")), n) for n, b in enumerate(node_buttons, 1)]
        return _compact({"body": body.strip(), "buttons": buttons, "as_list": len(buttons) > LIST_AFTER})
    parts = {str(c.get("type") or "").upper(): c for c in template.get("components") or []}
    rendered: dict[str, Any] = {
        "header": _header(parts.get("HEADER"), values.header),
        "body": _fill(str((parts.get("BODY") or {}).get("text") or ""), values.body) or None,
        "footer": (parts.get("FOOTER") or {}).get("text"),
    }
    buttons = _template_buttons(
        (parts.get("BUTTONS") or {}).get("buttons") or [], node_buttons, values, language
    )
    rendered["buttons"] = buttons
    rendered["as_list"] = len(buttons) > LIST_AFTER
    return _compact(rendered)


def _header(component: dict[str, Any] | None, value: Any) -> dict[str, Any] | None:
    if component is None:
        return None
    header_format = str(component.get("format") or "TEXT").upper()
    if header_format == "TEXT":
        text = _fill(str(component.get("text") or ""), [_text(value)] if value is not None else [])
        return {"kind": "TEXT", "text": text}
    if header_format in _MEDIA:
        link = value.get("link") or value.get("url") if isinstance(value, dict) else value
        filename = value.get("filename") if isinstance(value, dict) else None
        return _compact({"kind": header_format, "url": _text(link) if link else None, "filename": filename})
    return {"kind": header_format}


def _template_buttons(
    buttons: list[dict[str, Any]], node_buttons: list[dict[str, Any]], values: TemplateValues, language: str
) -> list[dict[str, Any]]:
    """Every button of the template, in its order; quick replies carry the node's button ids
    (the payloads the channel sends: without one, WhatsApp answers with the button's text)."""
    replies = iter(node_buttons)
    pending = iter(values.buttons)
    shown: list[dict[str, Any]] = []
    number = 0
    for button in buttons:
        kind = _BUTTON_KINDS.get(str(button.get("type") or "").upper(), "OTHER")
        title = str(button.get("text") or "")
        if kind == "QUICK_REPLY":
            number += 1
            answer = next(replies, None)
            shown.append(_reply(str(answer["id"]) if answer else title, title, number))
        elif kind == "URL":
            url = str(button.get("url") or "")
            if _PARAM.search(url):
                url = _fill(url, [next(pending, "")])
            shown.append({"kind": "URL", "title": title, "url": url})
        elif kind == "CALL":
            shown.append({"kind": "CALL", "title": title, "phone_number": button.get("phone_number")})
        elif kind == "COPY_CODE":
            label = title or _COPY_LABELS.get(language.split("_")[0].split("-")[0], "Copy code")
            shown.append(_compact({"kind": "COPY_CODE", "title": label, "code": next(pending, None)}))
        else:
            shown.append({"kind": "OTHER", "title": title or str(button.get("type"))})
    return shown


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
        lines.append("See all options:")
    for button in rendered.get("buttons") or []:
        lines.append(_button_line(button, as_list))
    return "\n".join(lines)


def _button_line(button: dict[str, Any], as_list: bool) -> str:
    kind, title = button.get("kind"), button.get("title") or ""
    if kind == "QUICK_REPLY" and button.get("number"):
        return f"{button['number']}. {title}" if as_list else f"[{button['number']}] {title}"
    detail = {"URL": button.get("url"), "CALL": button.get("phone_number"), "COPY_CODE": button.get("code")}
    tag = {"URL": "link", "CALL": "call", "COPY_CODE": "copy", "QUICK_REPLY": "reply"}.get(
        str(kind), "button"
    )
    value = detail.get(str(kind))
    suffix = f": {value}" if value else ""
    return f"- {title}{suffix} ({tag})" if as_list else f"[{tag}] {title}{suffix}"


def _reply(button_id: str, title: str, number: int) -> dict[str, Any]:
    return {"kind": "QUICK_REPLY", "title": title, "id": button_id, "number": number}


def _fill(text: str, values: list[str] | dict[str, str]) -> str:
    """``{{1}}`` / ``{{name}}`` replaced by their values; one without a value stays visible."""
    order: list[str] = []

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in order:
            order.append(key)
        if isinstance(values, dict):
            found = values.get(key)
        elif key.isdigit():
            index = int(key) - 1
            found = values[index] if 0 <= index < len(values) else None
        else:  # a named parameter given by position
            index = order.index(key)
            found = values[index] if index < len(values) else None
        return match.group(0) if found is None else found

    return _PARAM.sub(one, text)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _button_value(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("text", "code", "coupon_code", "suffix", "payload"):
            if value.get(key) is not None:
                return _text(value[key])
        return ""
    return _text(value)


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty parts (stored on every message: keep it small)."""
    return {k: v for k, v in document.items() if v not in (None, "", [], False)}
