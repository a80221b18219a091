"""Reading one ``graphql-transport-ws`` message: size, nesting, JSON and shape, or why not.

strawberry trusts a message's shape once it is JSON: a deep frame raised ``RecursionError`` and
``{"type": "subscribe", "payload": "str"}`` a ``TypeError``, and either dropped the socket with
no close code. ``read_message`` refuses all of these with ``MalformedMessage``, which the
handler turns into close code 4400 (the protocol's "bad request") with the message as reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.json_limits import JsonTooDeep, check_json_depth

# JSON types a field may have; null and absent are the same.
_OBJECT_OR_NULL = (dict, type(None))
_STRING_OR_NULL = (str, type(None))
_PAYLOADS = {"connection_init", "ping", "pong"}
MAX_REASON_BYTES = 123  # a close frame's reason (RFC 6455)


class MalformedMessage(ValueError):
    """The message is not one the protocol allows; the text says what is wrong (a close reason)."""


def read_message(
    text: str, max_bytes: int, max_depth: int, decode: Callable[[str], object]
) -> dict[str, Any]:
    """The message in ``text`` as a dict of a known shape, or ``MalformedMessage``."""
    # A character is at most 4 bytes: most messages are measured without encoding them.
    size = len(text) if len(text) * 4 <= max_bytes else len(text.encode("utf-8", "replace"))
    if size > max_bytes:
        raise MalformedMessage(f"message larger than {max_bytes} bytes")
    try:
        check_json_depth(text, max_depth)
    except JsonTooDeep as exc:
        raise MalformedMessage(str(exc)) from None
    try:
        message = decode(text)
    except (ValueError, RecursionError):
        raise MalformedMessage("WebSocket message must be valid JSON") from None
    problem = shape_problem(message)
    if problem is not None:
        raise MalformedMessage(problem)
    assert isinstance(message, dict)
    return message


def shape_problem(message: object) -> str | None:
    """Why ``message`` is not a well-formed protocol message (None when it is)."""
    if not isinstance(message, dict):
        return "a message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "a message needs a string 'type'"
    if kind in _PAYLOADS:
        return None if isinstance(message.get("payload"), _OBJECT_OR_NULL) else "payload must be an object"
    if kind == "complete":
        return _id_problem(message)
    if kind == "subscribe":
        return _id_problem(message) or _subscribe_payload_problem(message.get("payload"))
    return f"unknown message type {kind[:40]!r}"


def _id_problem(message: dict[str, Any]) -> str | None:
    operation_id = message.get("id")
    return None if isinstance(operation_id, str) and operation_id else "a message needs a string 'id'"


def _subscribe_payload_problem(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "subscribe payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "subscribe payload needs a string 'query'"
    for name, allowed in (("variables", _OBJECT_OR_NULL), ("extensions", _OBJECT_OR_NULL)):
        if not isinstance(payload.get(name), allowed):
            return f"subscribe payload '{name}' must be an object"
    if not isinstance(payload.get("operationName"), _STRING_OR_NULL):
        return "subscribe payload 'operationName' must be a string"
    return None
