"""The read receipt with the typing indicator (Meta's "typing indicators" page, 2025).

``POST /{phone-number-id}/messages`` with ``status: read``, the customer's ``message_id`` and
``typing_indicator: {type: text}`` marks that message read and shows "typing…" for up to 25 s or
until the business's next message. Not in the v23.0 OpenAPI description the fake checks
against (it predates the feature): the fake lists it among its deviations with this source.
"""

from __future__ import annotations

from typing import Any


def typing_receipt(message: dict[str, Any]) -> dict[str, Any]:
    """The request body for an outbox entry of kind ``typing`` (``reply_to``: the wamid)."""
    return {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": str(message["reply_to"]),
        "typing_indicator": {"type": "text"},
    }
