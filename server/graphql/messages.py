"""What every message in or out shows (API.md "Consistency rules"): the ``Message`` interface,
the outbound message and how the customer sees a message (``RenderedMessage``).

The sandbox outbox (``OutboundMessage``), the inbox and a run's messages (``InboxMessage``) all
implement it, so a client matches any message to Meta (``providerMessageId``, the wamid), reads
how far it got (``status``) and why it failed (``errorCode``, ``errorTitle``, ``errorDetail``)
and what it cost, without digging in run steps.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.channels.whatsapp.errors import error_title, reported_error
from server.machines.rendering import plain_text, render_message


@strawberry.enum
class MessageDirection(Enum):
    IN = "IN"
    OUT = "OUT"


@strawberry.type(
    description="what a message costs: Meta's pricing report when it came (final), else the estimate "
    "made when it was sent (rate card in server/channels/whatsapp/rate_card.json)"
)
class MessageCost:
    amount: float | None = strawberry.field(description="null when the country is not on the rate card")
    currency: str
    billable: bool
    category: str | None
    country: str | None
    pricing_type: str | None = strawberry.field(
        description="Meta's pricing type (regular, free_customer_service...)"
    )
    final: bool = strawberry.field(description="true: from Meta's pricing report; false: our estimate")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> MessageCost | None:
        actual, estimate = doc.get("cost_actual"), doc.get("cost_estimate")
        found = actual or estimate
        if not isinstance(found, dict) or not found.get("currency"):
            return None
        amount = found.get("amount")
        return cls(
            amount=float(amount) if amount is not None else None,
            currency=str(found["currency"]),
            billable=bool(found.get("billable", True)),
            category=found.get("category"),
            country=found.get("country"),
            pricing_type=found.get("type"),
            final=bool(actual),
        )


def _inbound(doc: dict[str, Any]) -> bool:
    return doc.get("direction") == "in"


@strawberry.interface(
    description="a message in or out; status: received (in), accepted, sent, delivered, read, failed (out)"
)
class Message:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="an inbound message's provider id (wamid), else our message id")
    def id(self) -> strawberry.ID:
        # Inbound documents are stored under the provider id scoped by workspace (store/messages.py).
        if _inbound(self.doc) and self.doc.get("provider_id"):
            return strawberry.ID(self.doc["provider_id"])
        return strawberry.ID(self.doc["_id"])

    @strawberry.field
    def direction(self) -> MessageDirection:
        return MessageDirection.IN if _inbound(self.doc) else MessageDirection.OUT

    @strawberry.field(
        description="the id the provider knows the message by: Meta's wamid (null until Meta accepted "
        "an outbound one); in the sandbox, our message id"
    )
    def provider_message_id(self) -> str | None:
        if self.doc.get("provider_id"):
            return str(self.doc["provider_id"])
        if self.doc.get("channel") == "sandbox" and not _inbound(self.doc):
            return str(self.doc["_id"])  # the sandbox's statuses name the message by its own id
        return None

    @strawberry.field
    def status(self) -> str:
        if _inbound(self.doc):
            return "received"
        return self.doc.get("status") or "sent"

    @strawberry.field(
        description="Meta's error code (131047...) or ours (TEMPLATE_PAUSED...); null unless it failed"
    )
    def error_code(self) -> str | None:
        if _inbound(self.doc):
            return reported_error(self.doc.get("errors"))[0]
        return self.doc.get("error_code")

    @strawberry.field(description="what the code means, in a few words")
    def error_title(self) -> str | None:
        if _inbound(self.doc):
            return reported_error(self.doc.get("errors"))[1]
        return self.doc.get("error_title") or error_title(self.doc.get("error_code"))

    @strawberry.field(description="the details: what happened and what to do")
    def error_detail(self) -> str | None:
        if _inbound(self.doc):
            return reported_error(self.doc.get("errors"))[2]
        return self.doc.get("error_detail") or self.doc.get("error")

    @strawberry.field(description="null for inbound messages, the sandbox, and sends with nothing priced")
    def cost(self) -> MessageCost | None:
        return None if _inbound(self.doc) else MessageCost.of(self.doc)

    @strawberry.field(description="the WhatsApp channel it went through or came in on (null: the sandbox)")
    def channel_id(self) -> strawberry.ID | None:
        return self.doc.get("channel_id")

    @strawberry.field(description="when it was received, or sent (or failed for good)")
    def at(self) -> datetime:
        return self.doc.get("at") or self.doc["created_at"]


@strawberry.type
class ReplyButton:
    id: str
    title: str


@strawberry.enum(description="what tapping a button does")
class ButtonKind(Enum):
    QUICK_REPLY = "QUICK_REPLY"  # answers with the button (id)
    URL = "URL"  # opens url
    CALL = "CALL"  # dials phoneNumber
    COPY_CODE = "COPY_CODE"  # copies code
    LOCATION_REQUEST = "LOCATION_REQUEST"  # the customer shares a location (the answer)
    FLOW = "FLOW"  # opens a WhatsApp Flow (an in-chat form); its answer comes back
    OTHER = "OTHER"


@strawberry.type(description="a message's header as WhatsApp shows it: text, or the media sent")
class RenderedHeader:
    kind: str = strawberry.field(description="TEXT, IMAGE, VIDEO, DOCUMENT, AUDIO, STICKER or LOCATION")
    text: str | None = None
    url: str | None = None
    filename: str | None = None


@strawberry.type(description="a button as the customer sees it")
class RenderedButton:
    kind: ButtonKind
    title: str
    id: str | None = strawberry.field(
        default=None, description="what a tap sends back (sandboxInbound buttonId); quick replies only"
    )
    number: int | None = strawberry.field(
        default=None, description="the number a customer may type instead of tapping; quick replies only"
    )
    url: str | None = None
    phone_number: str | None = None
    code: str | None = None
    description: str | None = strawberry.field(default=None, description="a list row's second line")
    section: str | None = strawberry.field(default=None, description="the list section the row is in")


def rendered_buttons(doc: dict[str, Any]) -> list[RenderedButton]:
    return [
        RenderedButton(
            kind=ButtonKind(b.get("kind") if b.get("kind") in ButtonKind.__members__ else "OTHER"),
            title=str(b.get("title") or ""),
            id=b.get("id"),
            number=b.get("number"),
            url=b.get("url"),
            phone_number=b.get("phone_number"),
            code=b.get("code"),
            description=b.get("description"),
            section=b.get("section"),
        )
        for b in doc.get("buttons") or []
    ]


def rendered_header(doc: dict[str, Any]) -> RenderedHeader | None:
    header = doc.get("header")
    if not header:
        return None
    return RenderedHeader(
        kind=str(header.get("kind")),
        text=header.get("text"),
        url=header.get("url"),
        filename=header.get("filename"),
    )


@strawberry.type(description="one card of a media carousel: its image or video, text and buttons")
class RenderedCard:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def header(self) -> RenderedHeader | None:
        return rendered_header(self.doc)

    @strawberry.field
    def body(self) -> str | None:
        return self.doc.get("body")

    @strawberry.field(description="quick replies (numbered across the cards) or the card's link")
    def buttons(self) -> list[RenderedButton]:
        return rendered_buttons(self.doc)


@strawberry.type(description="what the customer sees: templates filled in from their components")
class RenderedMessage:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def header(self) -> RenderedHeader | None:
        return rendered_header(self.doc)

    @strawberry.field(description="the text, template parameters filled in")
    def body(self) -> str | None:
        return self.doc.get("body")

    @strawberry.field
    def footer(self) -> str | None:
        return self.doc.get("footer")

    @strawberry.field(description="every button in order, with its kind")
    def buttons(self) -> list[RenderedButton]:
        return rendered_buttons(self.doc)

    @strawberry.field(description="more than 3 buttons: WhatsApp shows them as a list")
    def as_list(self) -> bool:
        return bool(self.doc.get("as_list"))

    @strawberry.field(description="the label of the button that opens a list message")
    def list_button(self) -> str | None:
        return self.doc.get("list_button")

    @strawberry.field(description="a media carousel's cards, in order")
    def cards(self) -> list[RenderedCard]:
        return [RenderedCard(doc=card) for card in self.doc.get("cards") or []]

    @strawberry.field(
        description="every button that answers (quick replies, list rows, carousel cards' quick replies), "
        "in order: what a tap sends (id) and the number a customer may type instead"
    )
    def replies(self) -> list[RenderedButton]:
        cards = [button for card in self.doc.get("cards") or [] for button in card.get("buttons") or []]
        answering = [b for b in [*(self.doc.get("buttons") or []), *cards] if b.get("id") and b.get("number")]
        return rendered_buttons({"buttons": answering})

    @strawberry.field(description="the whole message as plain text, as `konvo chat` prints it")
    def text(self) -> str:
        return plain_text(self.doc)


def rendered_of(message: dict[str, Any]) -> dict[str, Any]:
    """The rendered form stored when the message was queued (worked out now for older messages)."""
    return message.get("rendered") or render_message(message)


@strawberry.type
class OutboundMessage(Message):
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field(description="null when sent to a customer's BSUID (no phone number shared)")
    def phone(self) -> str | None:
        return self.doc.get("phone")

    @strawberry.field
    def kind(self) -> str:
        return self.doc.get("kind", "text")

    @strawberry.field(description="the text; for a template, its body with the parameters filled in")
    def text(self) -> str | None:
        return self.doc.get("text") or rendered_of(self.doc).get("body")

    @strawberry.field(description="the buttons a tap answers with, titled as the customer sees them")
    def buttons(self) -> list[ReplyButton]:
        return [
            ReplyButton(id=b["id"], title=b["title"])
            for b in rendered_of(self.doc).get("buttons") or []
            if b.get("kind") == "QUICK_REPLY"
        ]

    @strawberry.field(description="the message as the customer sees it (header, body, footer, every button)")
    def rendered(self) -> RenderedMessage:
        return RenderedMessage(doc=rendered_of(self.doc))

    @strawberry.field
    def media(self) -> JSON | None:
        return self.doc.get("media")

    @strawberry.field
    def template(self) -> JSON | None:
        return self.doc.get("template")

    @strawberry.field
    def run_id(self) -> strawberry.ID | None:
        return self.doc.get("run_id")

    @strawberry.field
    def node(self) -> str | None:
        return self.doc.get("node")
