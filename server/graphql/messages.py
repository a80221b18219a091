"""What every message in or out shows (API.md "Consistency rules"): the ``Message`` interface.

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

from server.channels.whatsapp.errors import error_title, reported_error


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
