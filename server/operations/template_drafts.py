"""Templates as the workspace writes them: components checked against Meta's limits, then stored as
drafts and listed. Submitting them to Meta and following their review is ``templates.py``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from server.channels.whatsapp.template_message import MAX_TEMPLATE_BUTTONS, MAX_TEMPLATE_BUTTONS_BY_TYPE
from server.clock import Clock
from server.errors import Conflict, InvalidInput
from server.ids import new_id
from server.store.catalog import TemplateRepository
from server.text_input import (
    checked_text,
)
from server.workspace_caches import WorkspaceCaches

TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
TEMPLATE_STATUSES = ("DRAFT", "PENDING", "APPROVED", "REJECTED", "PAUSED", "DISABLED", "FLAGGED")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")  # Meta: lower-case letters, digits, underscores
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")  # Meta locale codes: es, en_US, pt_BR
# Meta's limits (WhatsApp Cloud API, message templates).
MAX_BODY = 1024
MAX_HEADER_TEXT = 60
MAX_FOOTER = 60
MAX_BUTTON_TEXT = 25


class TemplateDraftServices(Protocol):
    """Writing template drafts: templates, the caches and the clock."""

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def templates(self) -> TemplateRepository: ...


def _upper(value: object) -> str:
    return str(getattr(value, "value", value) or "").strip().upper()


def _text(component: dict[str, Any], where: str, limit: int, required: bool = True) -> None:
    text = component.get("text")
    if text is None and not required:
        return
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{where} needs its text", field="components")
    checked_text(text, field="components", limit=limit, what=f"{where} text")


def _button(button: Any, index: int) -> dict[str, Any]:
    where = f"button {index + 1}"
    if not isinstance(button, dict):
        raise InvalidInput(f"{where} must be an object with a type", field="components")
    kind = _upper(button.get("type"))
    if kind not in BUTTON_TYPES:
        raise InvalidInput(f"{where}: type must be one of {', '.join(BUTTON_TYPES)}", field="components")
    normalized = {**button, "type": kind}
    if kind != "COPY_CODE":  # WhatsApp labels copy-code buttons itself
        _text(button, where, MAX_BUTTON_TEXT)
    if kind == "URL" and not (isinstance(button.get("url"), str) and button["url"].startswith("http")):
        raise InvalidInput(f"{where}: a URL button needs an http(s) url", field="components")
    if kind == "PHONE_NUMBER" and not (
        isinstance(button.get("phone_number"), str) and button["phone_number"].strip()
    ):
        raise InvalidInput(f"{where}: a PHONE_NUMBER button needs phone_number", field="components")
    return normalized


def validate_components(components: Any) -> list[dict[str, Any]]:
    """Check Meta's component format (HEADER, BODY, FOOTER, BUTTONS) and WhatsApp's limits.

    Done here rather than waiting for Meta's review so the author gets the reason at once.
    """
    if not isinstance(components, list) or not components:
        raise InvalidInput("components must be a list with at least a BODY", field="components")
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    for component in components:
        if not isinstance(component, dict):
            raise InvalidInput("each component must be an object with a type", field="components")
        kind = _upper(component.get("type"))
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise InvalidInput(
                f"unknown component type {component.get('type')!r}; use HEADER, BODY, FOOTER or BUTTONS",
                field="components",
            )
        if kind in seen:
            raise InvalidInput(f"a template has at most one {kind}", field="components")
        seen.add(kind)
        normalized = {**component, "type": kind}
        if kind == "HEADER":
            header_format = _upper(component.get("format") or "TEXT")
            if header_format not in HEADER_FORMATS:
                raise InvalidInput(
                    f"header format must be one of {', '.join(HEADER_FORMATS)}", field="components"
                )
            normalized["format"] = header_format
            if header_format == "TEXT":
                _text(component, "the header", MAX_HEADER_TEXT)
        elif kind == "BODY":
            _text(component, "the body", MAX_BODY)
        elif kind == "FOOTER":
            _text(component, "the footer", MAX_FOOTER)
        else:
            buttons = component.get("buttons")
            if not isinstance(buttons, list) or not buttons:
                raise InvalidInput("BUTTONS needs a list of buttons", field="components")
            if len(buttons) > MAX_TEMPLATE_BUTTONS:
                raise InvalidInput(
                    f"a template has at most {MAX_TEMPLATE_BUTTONS} buttons", field="components"
                )
            normalized["buttons"] = [_button(b, i) for i, b in enumerate(buttons)]
            for kind_limited, limit in MAX_TEMPLATE_BUTTONS_BY_TYPE.items():
                count = sum(1 for b in normalized["buttons"] if b["type"] == kind_limited)
                if count > limit:
                    raise InvalidInput(
                        f"a template has at most {limit} {kind_limited} button(s)", field="components"
                    )
        result.append(normalized)
    if "BODY" not in seen:
        raise InvalidInput("a template needs a BODY component", field="components")
    return result


def template_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A template's name, language, category and components, checked as Meta would check them."""
    name = str(data.get("name") or "").strip()
    if not _TEMPLATE_NAME.fullmatch(name):
        raise InvalidInput(
            f"template name {name!r} must be lower-case letters, digits and underscores "
            "(Meta's rule), e.g. cart_reminder",
            field="name",
        )
    language = str(data.get("language") or "").strip()
    if not _LANGUAGE.fullmatch(language):
        raise InvalidInput(
            f"language {language!r} must be a WhatsApp locale such as es, en_US or pt_BR", field="language"
        )
    category = _upper(data.get("category"))
    if category not in TEMPLATE_CATEGORIES:
        raise InvalidInput(f"category must be one of {', '.join(TEMPLATE_CATEGORIES)}", field="category")
    return {
        "name": name,
        "language": language,
        "category": category,
        "components": validate_components(data.get("components")),
    }


async def create_template(
    services: TemplateDraftServices, workspace_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Store a template as DRAFT; publishing a flow that uses it submits it to Meta."""
    fields = template_fields(data)
    now = services.clock.now()
    document = {
        "_id": new_id("tpl"),
        "workspace_id": workspace_id,
        **fields,
        "status": "DRAFT",
        "rejection_reason": None,
        "created_at": now,
        "updated_at": now,
    }
    if not await services.templates.insert(document):
        name, language = fields["name"], fields["language"]
        raise Conflict(
            f"template {name!r} already exists in language {language}; edit it with updateTemplate",
            field="name",
        )
    services.caches.forget_extras(workspace_id)  # runs check a template's category (consent)
    return document


async def list_templates(services: TemplateDraftServices, workspace_id: str) -> list[dict[str, Any]]:
    return await services.templates.list(workspace_id)
