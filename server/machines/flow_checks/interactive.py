"""WhatsApp's rules for interactive messages (lists, links, location requests, carousels) and
WhatsApp Flows, named on the node (docs/flows.md "Interactive messages").
"""

from __future__ import annotations

from server.channels.whatsapp.message_limits import (
    CAROUSEL_MEDIA,
    HEADER_MEDIA,
    MAX_CARD_BODY,
    MAX_CARD_BODY_LINE_BREAKS,
    MAX_CARD_REPLIES,
    MAX_CAROUSEL_CARDS,
    MAX_FLOW_CTA,
    MAX_INTERACTIVE_BODY,
    MAX_LINK_TITLE,
    MAX_LIST_BUTTON,
    MAX_ROW_DESCRIPTION,
    MAX_SECTION_TITLE,
    MIN_CAROUSEL_CARDS,
)
from server.machines.definition import (
    MessageNode,
    WhatsAppFlowNode,
)
from server.machines.flow_checks.issues import FlowIssue, error, warning


def interactive_texts(node: MessageNode) -> list[str]:
    """The node's texts that take placeholders beyond its text and caption."""
    texts = [node.list_button or ""]
    links = [node.link] + [card.link for card in node.carousel]
    texts += [part for link in links if link is not None for part in (link.title, link.url)]
    texts += [card.text or "" for card in node.carousel]
    return texts


def _interactive_kinds(node: MessageNode) -> list[str]:
    present = (
        ("buttons", bool(node.buttons)),
        ("link", node.link is not None),
        ("location_request", node.location_request is not None),
        ("carousel", bool(node.carousel)),
    )
    return [name for name, there in present if there]


def check_interactive(node: MessageNode) -> list[FlowIssue]:
    """WhatsApp's rules for lists, links, location requests and carousels, named on the node."""
    issues: list[FlowIssue] = []
    label = f"message {node.id!r}"
    kinds = _interactive_kinds(node)
    if len(kinds) > 1:
        issues.append(
            error(
                node.id,
                "INTERACTIVE_CONFLICT",
                f"{label} has {' and '.join(kinds)}; WhatsApp sends one kind of interactive message "
                f"at a time: keep one, or split it into two messages",
            )
        )
    needs_text = node.as_list or node.link is not None or node.location_request is not None or node.carousel
    what = "list" if node.as_list else kinds[0] if kinds else "buttons"
    if needs_text and not (node.text or "").strip():
        issues.append(
            error(
                node.id,
                "INTERACTIVE_TEXT_MISSING",
                f"{label} needs a 'text': WhatsApp shows it above its {what}",
            )
        )
    if (kinds or node.as_list) and len(node.text or "") > MAX_INTERACTIVE_BODY:
        issues.append(
            error(
                node.id,
                "INTERACTIVE_TEXT_TOO_LONG",
                f"{label} has a text of {len(node.text or '')} characters; with {what} WhatsApp "
                f"takes at most {MAX_INTERACTIVE_BODY}",
            )
        )
    issues += _check_interactive_media(node, label)
    if node.as_list:
        issues += _check_list(node, label)
    if node.link is not None:
        issues += _check_link(node.id, f"{label}: link", node.link.title, node.link.url)
    if node.carousel:
        issues += _check_carousel(node, label)
    return issues


def _check_interactive_media(node: MessageNode, label: str) -> list[FlowIssue]:
    if node.media is None:
        return []
    if node.as_list or node.location_request is not None or node.carousel:
        what = "a list" if node.as_list else "a location request" if node.location_request else "a carousel"
        where = "on its cards" if node.carousel else "in a message of its own before it"
        return [
            error(
                node.id,
                "INTERACTIVE_MEDIA",
                f"{label} is sent as {what}, which cannot show 'media': put the {node.media.kind} {where}",
            )
        ]
    if (node.buttons or node.link is not None) and node.media.kind not in HEADER_MEDIA:
        return [
            error(
                node.id,
                "INTERACTIVE_MEDIA",
                f"{label} can show an image, video or document above its buttons or link, not "
                f"{node.media.kind}: send the {node.media.kind} in a message of its own",
            )
        ]
    return []


def _check_list(node: MessageNode, label: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if not node.buttons:
        issues.append(
            error(
                node.id,
                "LIST_WITHOUT_ROWS",
                f"{label} sets list_button but has no buttons: add the rows as 'buttons', or "
                f"remove list_button",
            )
        )
    button = node.list_button
    if button is not None and (not button.strip() or len(button) > MAX_LIST_BUTTON):
        issues.append(
            error(
                node.id,
                "LIST_BUTTON_TOO_LONG",
                f"{label}: list_button {button!r} must be 1-{MAX_LIST_BUTTON} characters (the "
                f"button that opens the list)",
            )
        )
    for row in node.buttons:
        if row.description is not None and len(row.description) > MAX_ROW_DESCRIPTION:
            issues.append(
                error(
                    node.id,
                    "ROW_DESCRIPTION_TOO_LONG",
                    f"{label}: row {row.id!r} has a description of {len(row.description)} characters; "
                    f"shorten it to at most {MAX_ROW_DESCRIPTION}",
                )
            )
    sections = [row.section for row in node.buttons]
    for section in dict.fromkeys(s for s in sections if s is not None):
        if not section.strip() or len(section) > MAX_SECTION_TITLE:
            issues.append(
                error(
                    node.id,
                    "SECTION_TITLE_TOO_LONG",
                    f"{label}: section {section!r} has {len(section)} characters; a section title is "
                    f"1-{MAX_SECTION_TITLE}",
                )
            )
    if any(sections) and not all(sections):
        unsectioned = ", ".join(repr(r.id) for r in node.buttons if not r.section)
        issues.append(
            error(
                node.id,
                "SECTION_MISSING",
                f"{label}: rows {unsectioned} have no 'section' while others do; in a list with "
                f"sections every row is in one",
            )
        )
    runs = [name for i, name in enumerate(sections) if name and (i == 0 or sections[i - 1] != name)]
    split = sorted({name for name in runs if runs.count(name) > 1})
    if split:
        issues.append(
            error(
                node.id,
                "SECTION_SPLIT",
                f"{label}: the rows of section(s) {', '.join(repr(n) for n in split)} are not next to "
                f"each other; WhatsApp shows a section's rows together, so put them together (the "
                f"numbers customers type follow the order shown)",
            )
        )
    return issues


def _check_link(node_id: str, where: str, title: str, url: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    if len(title) > MAX_LINK_TITLE:
        issues.append(
            error(
                node_id,
                "LINK_TITLE_TOO_LONG",
                f"{where}: title {title!r} has {len(title)} characters; shorten it to at most "
                f"{MAX_LINK_TITLE}",
            )
        )
    if not url.lower().startswith(("http://", "https://", "{{")):
        issues.append(
            error(
                node_id,
                "LINK_URL_INVALID",
                f"{where}: url {url!r} must be an http(s) address (https://shop.example/...)",
            )
        )
    return issues


def _check_carousel(node: MessageNode, label: str) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    cards = node.carousel
    if not MIN_CAROUSEL_CARDS <= len(cards) <= MAX_CAROUSEL_CARDS:
        issues.append(
            error(
                node.id,
                "CAROUSEL_CARDS",
                f"{label} has {len(cards)} card(s); a carousel has {MIN_CAROUSEL_CARDS} to "
                f"{MAX_CAROUSEL_CARDS}",
            )
        )
    for number, card in enumerate(cards, 1):
        where = f"{label}, card {number}"
        if card.media.kind not in CAROUSEL_MEDIA:
            issues.append(
                error(
                    node.id,
                    "CAROUSEL_CARD_MEDIA",
                    f"{where}: a card shows an image or a video, not {card.media.kind}",
                )
            )
        text = card.text or ""
        if len(text) > MAX_CARD_BODY or text.count("\n") > MAX_CARD_BODY_LINE_BREAKS:
            issues.append(
                error(
                    node.id,
                    "CAROUSEL_CARD_TEXT_TOO_LONG",
                    f"{where}: its text has {len(text)} characters and {text.count(chr(10))} line "
                    f"breaks; a card takes at most {MAX_CARD_BODY} and {MAX_CARD_BODY_LINE_BREAKS}",
                )
            )
        if (card.link is None) == (not card.buttons) or len(card.buttons) > MAX_CARD_REPLIES:
            issues.append(
                error(
                    node.id,
                    "CAROUSEL_CARD_ACTION",
                    f"{where} needs either a 'link' or 1 to {MAX_CARD_REPLIES} quick-reply 'buttons' "
                    f"(it has {'a link and ' if card.link else ''}{len(card.buttons)} button(s))",
                )
            )
        if card.link is not None:
            issues += _check_link(node.id, f"{where}: link", card.link.title, card.link.url)
    shapes = {(card.media.kind, card.link is not None, len(card.buttons)) for card in cards}
    if len(shapes) > 1:
        issues.append(
            error(
                node.id,
                "CAROUSEL_CARDS_DIFFER",
                f"{label}: WhatsApp needs every card alike: the same media kind (all images or all "
                f"videos) and the same buttons (each a link, or each the same number of quick replies)",
            )
        )
    return issues


def check_whatsapp_flow(node: WhatsAppFlowNode) -> list[FlowIssue]:
    issues: list[FlowIssue] = []
    label = f"whatsapp_flow {node.id!r}"
    if not node.flow_id.isdigit():
        issues.append(
            error(
                node.id,
                "FLOW_ID_INVALID",
                f"{label}: flow_id {node.flow_id!r} is not a WhatsApp Flow id; copy the numeric id "
                f"WhatsApp Manager shows for the Flow",
            )
        )
    if len(node.cta) > MAX_FLOW_CTA:
        issues.append(
            error(
                node.id,
                "FLOW_CTA_TOO_LONG",
                f"{label}: cta {node.cta!r} has {len(node.cta)} characters; the button that opens the "
                f"form takes at most {MAX_FLOW_CTA}",
            )
        )
    if len(node.text) > MAX_INTERACTIVE_BODY:
        issues.append(
            error(
                node.id,
                "INTERACTIVE_TEXT_TOO_LONG",
                f"{label} has a text of {len(node.text)} characters; WhatsApp takes at most "
                f"{MAX_INTERACTIVE_BODY}",
            )
        )
    if node.data is not None and not node.data:
        issues.append(
            error(
                node.id,
                "FLOW_DATA_EMPTY",
                f"{label}: 'data' is empty; WhatsApp wants the first screen's data to have "
                f"something in it, or leave 'data' out",
            )
        )
    if not node.fields:
        issues.append(
            warning(
                node.id,
                "FORM_SAVES_NOTHING",
                f"{label} maps no form field to a contact field ('fields'), so the answers are "
                f'not saved; add e.g. "fields": {{"email": "email"}}',
            )
        )
    return issues
