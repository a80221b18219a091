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
# Where a write command lists its statements (an insert's documents may travel as a document sequence).
_STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}


def _statements(event: monitoring.CommandStartedEvent) -> int:
    """How many documents or filters a write command carries (one for ``findAndModify``)."""
    field = _STATEMENTS.get(event.command_name)
    return len(event.command.get(field) or ()) if field is not None else 1


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
        # Write statements sent, by (collection, command): an insert costs the embedded store a
        # fraction of an update or a delete of the same document (issue 19).
        self.statements: Counter[tuple[str, str]] = Counter()
        self._writing: dict[tuple[Any, int], str] = {}  # (connection, request) -> collection

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1
        if event.command_name in WRITE_COMMANDS:
            collection = str(event.command[event.command_name])
            self._writing[(event.connection_id, event.request_id)] = collection
            self.statements[(collection, event.command_name)] += _statements(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        written = documents_written(event.command_name, event.reply)
        self.documents_written += written
        collection = self._writing.pop((event.connection_id, event.request_id), None)
        if written and collection is not None:
            self.written_by_collection[collection] += written

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.failures += 1
        self._writing.pop((event.connection_id, event.request_id), None)
