"""The outbox fields of an interactive message: a list, a CTA URL, a location request, a carousel
(``server/channels/whatsapp/payloads.py`` turns them into Graph API bodies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.documents import RunDoc
from server.machines.definition import (
    MessageNode,
)
from server.machines.placeholders import render
from server.machines.turn import Turn

# The label of the button that opens a list, when the node sets none, by the workspace's language.
LIST_BUTTON_LABELS = {
    "es": "Ver opciones",
    "pt": "Ver opções",
    "fr": "Voir les options",
    "it": "Vedi opzioni",
    "de": "Optionen ansehen",
    "en": "See options",
}


def list_button_label(node: MessageNode, locale: str) -> str:
    return node.list_button or LIST_BUTTON_LABELS.get(locale.split("-")[0].lower(), LIST_BUTTON_LABELS["en"])


def interactive_body(turn: Turn, run: RunDoc, node: MessageNode, warnings: list[str]) -> dict[str, Any]:
    """The outbox fields of a list, CTA URL, location request or carousel message (payloads.py)."""

    def filled(value: str) -> str:
        text, missing = render(value, turn.contact, run, turn.regional)
        warnings.extend(missing)
        return text

    if node.carousel:
        return {"kind": "carousel", "cards": [_card(card, filled) for card in node.carousel]}
    if node.location_request is not None:
        return {"kind": "location_request"}
    if node.link is not None:
        return {"kind": "cta_url", "link": {"title": filled(node.link.title), "url": filled(node.link.url)}}
    if node.as_list:
        label = filled(list_button_label(node, turn.locale))
        return {"kind": "list", "list": {"button": label, "sections": _sections(node)}}
    return {}


def _sections(node: MessageNode) -> list[dict[str, Any]]:
    """The list's rows grouped in their sections, in the node's order (the validator keeps a
    section's rows together, so the numbers customers type follow what they see)."""
    sections: list[dict[str, Any]] = []
    for button in node.buttons:
        row: dict[str, Any] = {"id": button.id, "title": button.title or button.id}
        if button.description:
            row["description"] = button.description
        if not sections or sections[-1].get("title") != button.section:
            sections.append({"title": button.section, "rows": []} if button.section else {"rows": []})
        sections[-1]["rows"].append(row)
    return sections


def _card(card: Any, filled: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"media": {"kind": card.media.kind, "url": card.media.url}}
    if card.text:
        out["text"] = filled(card.text)
    if card.link is not None:
        out["link"] = {"title": filled(card.link.title), "url": filled(card.link.url)}
    if card.buttons:
        out["buttons"] = [{"id": b.id, "title": b.title or b.id} for b in card.buttons]
    return out
