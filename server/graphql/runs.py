"""How a run document and its steps read as GraphQL fields: one home for ``Run`` (``types.py``),
the ``Step`` types (``run_steps.py``) and the simulator's ``SimulatedRun``/``SimulatedStep``.

Each type declares its fields where they stand in its own schema (their order, descriptions and
nullability stay its own) and reads the stored document (``RunDoc``, ``StepDoc``) through the
functions here, so two views of one run cannot read a stored key differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

import strawberry
from strawberry.scalars import JSON

from server.graphql.json_values import plain


@strawberry.enum
class RunStatus(Enum):
    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class HasDoc(Protocol):
    """A GraphQL object over one stored document (a run, or one of its steps)."""

    @property
    def doc(self) -> Mapping[str, Any]: ...


# --- a run ---------------------------------------------------------------------------------------


def run_id(view: HasDoc) -> strawberry.ID:
    return strawberry.ID(view.doc["id"])


def run_status(view: HasDoc) -> RunStatus:
    return RunStatus(view.doc["status"])


def run_node(view: HasDoc) -> str | None:
    return view.doc.get("node")


def run_end_reason(view: HasDoc) -> str | None:
    return view.doc.get("end_reason")


def run_waiting_for(view: HasDoc) -> JSON | None:
    return plain(view.doc.get("waiting_for"))


def run_started_at(view: HasDoc) -> datetime:
    started: datetime = view.doc["started_at"]
    return started


def run_ended_at(view: HasDoc) -> datetime | None:
    return view.doc.get("ended_at")


# --- a step of a run -------------------------------------------------------------------------------


def step_node(view: HasDoc) -> str | None:
    return view.doc.get("node")


def step_action(view: HasDoc) -> str:
    return str(view.doc["action"])


def step_at(view: HasDoc) -> datetime:
    at: datetime = view.doc["at"]
    return at


def step_outcome(view: HasDoc) -> str:
    return str(view.doc.get("outcome"))


def step_detail(view: HasDoc) -> JSON | None:
    return plain(view.doc.get("detail"))


def step_warnings(view: HasDoc) -> list[str]:
    return list(view.doc.get("warnings") or [])
