"""GraphQL shapes of what customers send besides text and taps: locations, reactions, quotes.

Outputs are read off a stored inbound message (the WhatsApp webhook and ``sandboxInbound`` store
the same fields); inputs let the sandbox customer send them (``sandboxInbound``).
"""

from __future__ import annotations

from typing import Any

import strawberry

from server.operations.sandbox_share import SandboxShare


@strawberry.type(description="a location the customer shared")
class MessageLocation:
    latitude: float | None
    longitude: float | None
    name: str | None = None
    address: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, location: dict[str, Any] | None) -> MessageLocation | None:
        if not location:
            return None
        return cls(
            latitude=location.get("latitude"),
            longitude=location.get("longitude"),
            name=location.get("name"),
            address=location.get("address"),
            url=location.get("url"),
        )


@strawberry.input(description="a location the sandbox customer shares (answers a location request)")
class LocationInput:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@strawberry.input(description="the sandbox customer reacts to a message (an empty emoji removes it)")
class ReactionInput:
    message_id: strawberry.ID = strawberry.field(description="the message reacted to (InboxMessage.id)")
    emoji: str


def sandbox_share(
    location: LocationInput | None,
    flow_response: Any,
    reaction: ReactionInput | None,
    reply_to: strawberry.ID | None,
) -> SandboxShare | None:
    """The arguments of ``sandboxInbound`` beyond text and buttonId, or None when none is given."""
    if location is None and flow_response is None and reaction is None and reply_to is None:
        return None
    return SandboxShare(
        location=(
            {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "name": location.name,
                "address": location.address,
            }
            if location is not None
            else None
        ),
        form=flow_response,
        reaction={"message_id": str(reaction.message_id), "emoji": reaction.emoji} if reaction else None,
        reply_to=str(reply_to) if reply_to is not None else None,
    )
