"""Store work counted from the driver's command monitoring: commands by name, documents written.

The store's CPU grows with every command it answers and every document (and its index entries)
it writes, so these two counts per event say what a change to the write path does to the store,
on any MongoDB, without profiling it (``./scripts/bench`` prints them per event from ``/metrics``).
Off unless ``KONVO_STORE_STATS`` is set: the listener runs on every command the server sends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from pymongo import monitoring


def documents_written(command_name: str, reply: Mapping[str, Any]) -> int:
    """Documents a write command's reply says it inserted, changed or deleted (0 for a read)."""
    if command_name in ("insert", "delete"):
        return int(reply.get("n", 0))
    if command_name == "update":
        return int(reply.get("nModified", 0)) + len(reply.get("upserted") or ())
    if command_name == "findAndModify":
        return int((reply.get("lastErrorObject") or {}).get("n", 0))  # the one document found or upserted
    if command_name == "bulkWrite":  # MongoDB 8's client-level bulk: one command, many collections
        return sum(int(reply.get(key, 0)) for key in ("nInserted", "nModified", "nUpserted", "nDeleted"))
    return 0


WRITE_COMMANDS = ("insert", "update", "delete", "findAndModify")


class StoreStats(monitoring.CommandListener):
    """Counts since start: commands sent by name, failed commands, documents written (in all and
    by collection: which write of an event costs the store is what a change to it needs to know).

    Called by the async driver on the event loop that sent the command, so plain counters do.
    """

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.failures = 0
        self.documents_written = 0
        self.written_by_collection: Counter[str] = Counter()
        self._writing: dict[tuple[Any, int], str] = {}  # (connection, request) -> collection

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1
        if event.command_name in WRITE_COMMANDS:
            self._writing[(event.connection_id, event.request_id)] = str(event.command[event.command_name])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        written = documents_written(event.command_name, event.reply)
        self.documents_written += written
        collection = self._writing.pop((event.connection_id, event.request_id), None)
        if written and collection is not None:
            self.written_by_collection[collection] += written

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failures += 1
        self._writing.pop((event.connection_id, event.request_id), None)
