"""A/B split assignment: a deterministic weighted draw, and the branch a contact keeps.

Why a seeded hash and not ``random``: a draw that is a pure function of (contact, flow, node)
is reproducible (a test, a simulation or a support engineer gets the same branch), needs no
random state in the actor, and gives each contact an independent uniform number, so over many
contacts the branches fill in proportion to their weights. A sticky split also *stores* the
branch on the contact (``contact["splits"]``): editing the weights later moves only contacts that
have not been assigned yet, never one that already saw a variant.

Stored as a list (node ids may hold dots, which Mongo field names cannot) of
``{"flow_id", "node", "branch", "at", "run_id"}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from server.documents import ContactDoc
from server.machines.definition import SplitBranch

ASSIGNMENTS: Final = "splits"
MAX_ASSIGNMENTS = 200  # a contact goes through a bounded number of split nodes; oldest dropped


def draw(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by ``parts`` (SHA-256 of them, first 8 bytes)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(branches: Sequence[SplitBranch], number: float) -> SplitBranch:
    """The branch whose share of the total weight covers ``number`` (branches in order)."""
    weights = [max(b.weight, 0.0) for b in branches]
    total = sum(weights)
    if total <= 0:
        return branches[0]
    point = number * total
    running = 0.0
    for branch, weight in zip(branches, weights, strict=True):
        running += weight
        if point < running:
            return branch
    return branches[-1]


def kept_branch(contact: Mapping[str, Any], flow_id: str, node_id: str) -> str | None:
    """The branch this contact was given at this node before (sticky splits), or None."""
    for entry in contact.get(ASSIGNMENTS) or []:
        if entry.get("flow_id") == flow_id and entry.get("node") == node_id:
            return str(entry.get("branch"))
    return None


def keep(contact: ContactDoc, flow_id: str, node_id: str, branch: str, at: datetime, run_id: str) -> None:
    """Remember ``branch`` for this contact at this node (replacing an older assignment)."""
    entries = [
        e
        for e in contact.get(ASSIGNMENTS) or []
        if not (e.get("flow_id") == flow_id and e.get("node") == node_id)
    ]
    entries.append({"flow_id": flow_id, "node": node_id, "branch": branch, "at": at, "run_id": run_id})
    contact[ASSIGNMENTS] = entries[-MAX_ASSIGNMENTS:]
