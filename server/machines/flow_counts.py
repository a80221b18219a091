"""The analytics counters one turn adds to its flows, derived from what the turn did (pure).

``TurnCounts`` watches a turn (``TurnObserver``): every step recorded, every node entered
and every wait begun. Counters are generic, so a node kind added later (an A/B ``split`` whose
step names its branch) is counted without code here:

- per node: ``entered``, ``waited``; ``step/<action>/<outcome>`` for every step at the node
  (``reply``, ``no_reply``, ``message_sent``, ``message_status/delivered``...);
  ``button/<id>`` for a button pressed; ``branch/<name>`` for a step naming a branch (a
  condition, a split); ``error/<code>`` for a message that failed with that code;
  ``ended/<status>/<reason>`` for a run that ended at the node;
- per flow version (no node): ``step/started/ok`` (runs started), ``step/not_started/<why>``,
  and ``ended/<status>/<reason>`` for every run that ended.

A committed turn carries its counters in the contact document (``COUNTS_FIELD``, appended by
``pend``), so they survive a crash between the commit and the counter write;
``server/actors/flow_counters.py`` applies them exactly once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from server.documents import ContactDoc, RunDoc, StepDoc

COUNTS_FIELD: Final = "counts_pending"
MAX_PENDING = 100  # entries a contact keeps while the counter store cannot take them

# (flow id, version, node id or None for the run itself, counter name parts)
CounterKey = tuple[str, int, str | None, tuple[str, ...]]


class TurnCounts:
    """Counts what one turn does; ``pend`` stores them in the contact for after the commit."""

    def __init__(self) -> None:
        self.counts: Counter[CounterKey] = Counter()

    def _add(self, run: RunDoc, node: str | None, *name: str) -> None:
        self.counts[(run["flow_id"], int(run["version"]), node, name)] += 1

    def step(self, run: RunDoc, step: StepDoc) -> None:
        node = step.get("node")
        action, outcome = str(step.get("action")), str(step.get("outcome"))
        detail = step.get("detail") or {}
        self._add(run, node, "step", action, outcome)
        if action == "ended":
            reason = str(detail.get("reason") or "")
            self._add(run, None, "ended", outcome, reason)
            if node is not None:
                self._add(run, node, "ended", outcome, reason)
        if node is None:
            return
        if action == "button" and detail.get("button") is not None:
            self._add(run, node, "button", str(detail["button"]))
        if detail.get("branch") is not None:
            self._add(run, node, "branch", str(detail["branch"]))
        if outcome == "failed" and detail.get("error_code") is not None:
            self._add(run, node, "error", str(detail["error_code"]))

    def entered(self, run: RunDoc, node_id: str) -> None:
        self._add(run, node_id, "entered")

    def waited(self, run: RunDoc, node_id: str) -> None:
        self._add(run, node_id, "waited")

    def entry(self, contact: ContactDoc) -> dict[str, Any] | None:
        """This turn's counters as stored: keyed by the committed version (the idempotency key)."""
        if not self.counts:
            return None
        return {
            "v": contact["version"],
            "at": contact["updated_at"],
            "c": [
                [flow, version, node, list(name), n] for (flow, version, node, name), n in self.counts.items()
            ],
        }

    def pend(self, contact: ContactDoc) -> None:
        """Add this turn's entry to the contact (after its version was bumped, before the commit)."""
        entry = self.entry(contact)
        if entry is None:
            return
        pending = contact.setdefault(COUNTS_FIELD, [])
        pending.append(entry)
        del pending[:-MAX_PENDING]


def entry_counts(entry: dict[str, Any]) -> list[tuple[CounterKey, int]]:
    """The counters of a stored entry, as keys and increments."""
    return [((flow, int(version), node, tuple(name)), int(n)) for flow, version, node, name, n in entry["c"]]
