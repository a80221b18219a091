"""Secret fields of stored documents, sealed on write and opened on read (``server/secret_box.py``).

Repositories name their secret fields as dotted paths (``access_token``,
``settings.klaviyo.private_key``); the code above them only ever sees plaintext.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from server.secret_box import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

Document = dict[str, Any]


def _convert(document: Document, paths: Sequence[str], change: Any) -> Document:
    """A copy of ``document`` with ``change`` applied to every string found at ``paths``."""
    result = dict(document)
    for path in paths:
        parts = path.split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                break
            node[part] = child = dict(child)
            node = child
        else:
            value = node.get(parts[-1])
            if isinstance(value, str):
                node[parts[-1]] = change(value)
    return result


def seal_fields(box: SecretBox, document: Document, paths: Sequence[str]) -> Document:
    return _convert(document, paths, box.seal)


def open_fields(box: SecretBox, document: Document | None, paths: Sequence[str]) -> Document | None:
    return None if document is None else _convert(document, paths, box.open)


def _value_at(document: Document, path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


async def reseal_fields(
    collection: AsyncCollection[Document], box: SecretBox, paths: Sequence[str]
) -> tuple[int, int]:
    """Seal with the first key every value at ``paths`` that is plaintext or sealed with an older
    key; returns (re-sealed, unreadable). Each write is conditional on the value read, so a
    concurrent change (or another process doing the same pass) is never overwritten."""
    resealed = unreadable = 0
    query = {"$or": [{path: {"$exists": True}} for path in paths]}
    async for document in collection.find(query, {path: 1 for path in paths}):
        for path in paths:
            value = _value_at(document, path)
            if not isinstance(value, str) or box.is_current(value):
                continue
            try:
                sealed = box.reseal(value)
            except SecretKeyError:
                unreadable += 1
                continue
            result = await collection.update_one(
                {"_id": document["_id"], path: value}, {"$set": {path: sealed}}
            )
            resealed += result.modified_count
    if unreadable:
        log.error(
            "%d secret(s) in %s cannot be opened with KONVO_SECRET_KEY: was a key removed too early?",
            unreadable,
            collection.name,
        )
    return resealed, unreadable
