"""Domain errors: each carries the API error code and a message a person can act on."""

from __future__ import annotations


class KonvoError(Exception):
    """Base of every error the API reports to callers (``extensions.code``)."""

    code = "INTERNAL"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}


class Unauthenticated(KonvoError):
    code = "UNAUTHENTICATED"


class Forbidden(KonvoError):
    code = "FORBIDDEN"


class NotFound(KonvoError):
    code = "NOT_FOUND"


class InvalidInput(KonvoError):
    code = "INVALID_INPUT"


class InvalidFlow(KonvoError):
    """A flow document or version that cannot be used; ``node_id`` names the culprit."""

    code = "INVALID_FLOW"

    def __init__(self, message: str, node_id: str | None = None, **details: object) -> None:
        super().__init__(message, nodeId=node_id, **details)
        self.node_id = node_id


class WindowClosed(KonvoError):
    code = "WINDOW_CLOSED"


class Conflict(KonvoError):
    code = "CONFLICT"


class WorkspaceDisabled(KonvoError):
    """The workspace was disabled (or is being deleted) by an operator: its keys, webhooks and
    turns are refused until it is enabled again."""

    code = "WORKSPACE_DISABLED"


class Unavailable(KonvoError):
    """A backing service (store, Redis) cannot take the request right now."""

    code = "UNAVAILABLE"


class EgressRefused(KonvoError):
    """A URL the egress policy does not let the server call (``server/egress.py``).

    The message is fixed: it never says what the target resolved to or answered, so a caller
    cannot use the server to map a network. ``reason`` is for the server's log only.
    """

    code = "EGRESS_REFUSED"

    def __init__(self, reason: str, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(
            f"{where}this URL is not allowed: the server calls only https URLs whose host resolves to "
            "public addresses (an operator can allow more with KONVO_EGRESS_ALLOW)",
            field=field,
        )
        self.reason = reason
