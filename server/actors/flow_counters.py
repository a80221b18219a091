"""Flow analytics after a commit: the turn's counters stored exactly once, and subscribers told.

A turn's counters travel in its commit (``counts_pending`` in the contact document, see
``server/machines/flow_counts.py``): a crash after the commit cannot lose them. After the
commit ``committed`` hands them to the counter store, which counts each entry once (a mark per
contact written in one transaction with the increments, ``server/store/flow_counters.py``);
once stored, the actor's copy of the document forgets them and its next commit drops them from
the store's copy too. If the process dies in between, the stored document still holds them:
the contact's next turn, or the recovery pass (``recount``), hands them in again, and the mark
makes that a no-op for the ones already counted. Nothing is counted twice, nothing is lost.

``flowAnalyticsUpdated`` hears of a committed turn's counts in that turn's news (``committed``
returns the flows, ``Effects`` publishes them with the contact: one message per turn). Counts
from recovery go through ``CountsPublisher``: one message per flow and burst, at most one publish
round in flight, so a flow counted 1,000 times while a round is out is published once more after
it, not 1,000 times.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Protocol

from server.documents import ContactDoc
from server.machines.flow_counts import COUNTS_FIELD
from server.store.flow_counters import FlowCounterRepository, FlowRef, Pending

log = logging.getLogger(__name__)

# How far back recovery looks for carried entries after a start (a process down for longer lost
# the counts of the turns it committed just before it died). Later passes look back only to the
# previous pass: most documents carry their last turn's entry, counted long ago.
RECOVERY_WINDOW = timedelta(days=7)


class CountsPublisher(Protocol):
    async def flows_counted(self, flows: set[FlowRef]) -> None: ...


def _flows_of(workspace_id: str, entries: list[dict[str, Any]]) -> set[FlowRef]:
    return {(workspace_id, str(counter[0])) for entry in entries for counter in entry["c"]}


class FlowCounters:
    def __init__(self, repository: FlowCounterRepository, publisher: CountsPublisher | None = None) -> None:
        self._repository = repository
        self._publisher = publisher
        self._dirty: set[FlowRef] = set()
        self._publishing: asyncio.Task[None] | None = None

    async def committed(self, contact: ContactDoc) -> set[str]:
        """Store the counters a committed contact carries; on failure they stay for a later try.

        Returns the ids of the flows counted: the caller tells subscribers in the turn's news."""
        pending: list[dict[str, Any]] = list(contact.get(COUNTS_FIELD) or [])
        if not pending:
            return set()
        try:
            await self._repository.add(contact["_id"], contact["workspace_id"], pending)
        except Exception as exc:  # the document keeps them: the next commit or recovery counts them
            log.warning("flow counters of %s not stored yet: %s", contact["_id"], exc)
            return set()
        counted = {entry["v"] for entry in pending}
        contact[COUNTS_FIELD] = [e for e in contact.get(COUNTS_FIELD) or [] if e["v"] not in counted]
        return {flow_id for _, flow_id in _flows_of(contact["workspace_id"], pending)}

    async def recount(self, batch: list[Pending]) -> None:
        """Count what stored contacts still carry (recovery: entries a crash left uncounted);
        entries counted already are skipped by the store's marks."""
        await self._repository.apply(batch)
        flows: set[FlowRef] = set()
        for _, workspace_id, entries in batch:
            flows |= _flows_of(workspace_id, entries)
        self._notify(flows)

    def _notify(self, flows: set[FlowRef]) -> None:
        if self._publisher is None or not flows:
            return
        self._dirty |= flows
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.get_running_loop().create_task(self._publish(), name="analytics-news")

    async def _publish(self) -> None:
        assert self._publisher is not None
        while self._dirty:
            flows, self._dirty = self._dirty, set()
            try:
                await self._publisher.flows_counted(flows)
            except Exception as exc:  # subscribers miss one update; the next one carries the totals
                log.warning("publishing analytics news failed: %s", exc)

    async def drain(self) -> None:
        """Wait for the news being published (shutdown, tests)."""
        if self._publishing is not None and not self._publishing.done():
            await asyncio.gather(self._publishing, return_exceptions=True)
