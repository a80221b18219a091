"""The wire format of forwarded turns: events, results and errors as BSON-ready documents.

A replica forwards a contact's event to the shard's owner and gets back the turn's result or
its error (``server/actors/shards.py``). Everything crosses as BSON (``server/packing.py``):
contact documents hold datetimes, and nothing is unpickled from another process. Tuples come
back as tuples, and a domain error comes back as the same ``KonvoError`` class and message, so
the API answers with the code it would have given on the owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from typing import Any

import bson
from bson.errors import InvalidDocument

from server.actors.events import Event, TurnResult
from server.documents import as_contact
from server.errors import InvalidFlow, KonvoError

_EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}


class RemoteTurnError(RuntimeError):
    """An unexpected (non-domain) failure of a turn on the owning replica; masked like a local one."""


def encode_event(event: Event) -> dict[str, Any]:
    return {
        "type": type(event).__name__,
        "fields": {f.name: getattr(event, f.name) for f in dataclasses.fields(event)},
    }


def decode_event(document: dict[str, Any]) -> Event:
    cls = _EVENT_TYPES.get(document["type"])
    if cls is None:
        raise ValueError(f"unknown event type {document['type']!r}")
    values = dict(document["fields"])
    for f in dataclasses.fields(cls):
        if str(f.type).startswith("tuple") and isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return typing.cast(Event, cls(**values))


def encode_result(result: TurnResult) -> dict[str, Any]:
    return {
        "contact": result.contact,
        "run": result.run,
        "duplicate": result.duplicate,
        "changed": result.changed,
    }


def decode_result(document: dict[str, Any]) -> TurnResult:
    return TurnResult(
        as_contact(document["contact"]),  # the owner replica's contact, decoded from its BSON
        run=document.get("run"),
        duplicate=document["duplicate"],
        changed=document["changed"],
    )


def _error_classes() -> dict[str, type[KonvoError]]:
    found: dict[str, type[KonvoError]] = {}
    pending: list[type[KonvoError]] = [KonvoError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, KonvoError):
        details = exc.details
        try:
            bson.encode({"d": details})
        except (InvalidDocument, TypeError, OverflowError):
            details = {}
        return {"class": type(exc).__name__, "message": exc.message, "details": details}
    if isinstance(exc, asyncio.CancelledError):
        return {"class": "Unavailable", "message": "the owning server stopped the turn; retry", "details": {}}
    return {"class": None, "message": f"{type(exc).__name__}: {exc}", "details": {}}


def decode_error(document: dict[str, Any]) -> Exception:
    """The same ``KonvoError`` class and message as raised on the owner (the API's code is kept)."""
    cls = _error_classes().get(document.get("class") or "")
    message = document["message"]
    if cls is None:
        return RemoteTurnError(message)
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    error.details = dict(document.get("details") or {})
    if isinstance(error, InvalidFlow):
        error.node_id = typing.cast(str | None, error.details.get("nodeId"))
    return error
