"""What work of each workspace this process is doing right now, so a deletion can wait for it.

Deleting a workspace removes its documents and Redis keys; work admitted before the deletion
began (a contact turn that passed the gate, a webhook being stored, a broadcast being sent) would
otherwise write after the removal and leave some of the workspace behind. Every such piece of work
counts itself here for as long as it may write; ``idle`` waits until a workspace's count is
zero. Counting is an increment and a decrement of a dict entry per piece of work (no I/O): every
turn pays it (issue 19 measures CPU per event).
"""

from __future__ import annotations

import asyncio


class InFlight:
    """Counts of work in flight per workspace in this process, and waiters for them to end."""

    __slots__ = ("_counts", "_idle")

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}  # only while someone waits for the workspace

    def enter(self, workspace_id: str) -> Ticket:
        """Count one piece of work of the workspace until the ticket is released."""
        self.add(workspace_id)
        return Ticket(self, workspace_id)

    def add(self, workspace_id: str) -> None:
        """Count one piece of work; its owner calls ``done`` exactly once (``enter`` does it for you)."""
        self._counts[workspace_id] = self._counts.get(workspace_id, 0) + 1

    def count(self, workspace_id: str) -> int:
        return self._counts.get(workspace_id, 0)

    async def idle(self, workspace_id: str) -> None:
        """Return once no work of the workspace is in flight here (at once when none is)."""
        while self._counts.get(workspace_id, 0):
            event = self._idle.get(workspace_id)
            if event is None:
                event = self._idle[workspace_id] = asyncio.Event()
            await event.wait()

    def done(self, workspace_id: str) -> None:
        left = self._counts.get(workspace_id, 0) - 1
        if left > 0:
            self._counts[workspace_id] = left
            return
        self._counts.pop(workspace_id, None)
        event = self._idle.pop(workspace_id, None)
        if event is not None:
            event.set()


class Ticket:
    """One piece of work counted in flight; ``release`` (or leaving its ``with``) ends it, once."""

    __slots__ = ("_in_flight", "workspace_id")

    def __init__(self, in_flight: InFlight, workspace_id: str) -> None:
        self._in_flight: InFlight | None = in_flight
        self.workspace_id = workspace_id

    def release(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.done(self.workspace_id)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
