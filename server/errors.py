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


class Unavailable(KonvoError):
    """A backing service (store, Redis) cannot take the request right now."""

    code = "UNAVAILABLE"
