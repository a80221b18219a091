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

from typing import Any

from server.machines.template_message import ResolvedButton, ResolvedHeader, resolve_template

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


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty parts (stored on every message: keep it small)."""
    return {k: v for k, v in document.items() if v not in (None, "", [], False)}
