"""The workspace's agents: e-mail (their name in flows, matched whatever its case), teams and
availability, which assignment reads.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from server.clock import Clock
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import new_id
from server.store.catalog import AgentRepository
from server.store.teams import TeamRepository
from server.text_input import (
    MAX_AGENT_NAME,
    MAX_EMAIL,
    checked_name,
)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class AgentServices(Protocol):
    """What the agent use cases read: agents, their teams, the clock."""

    @property
    def agents(self) -> AgentRepository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def teams(self) -> TeamRepository: ...


def normalize_email(email: object) -> str:
    value = checked_name(email, field="email", limit=MAX_EMAIL, what="an e-mail address").lower()
    if not _EMAIL.fullmatch(value):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return value


def agent_name(name: object) -> str:
    return checked_name(name, field="name", limit=MAX_AGENT_NAME, what="an agent name")


def _teams(teams: list[str] | None) -> list[str]:
    cleaned = [" ".join(t.split()) for t in teams or [] if isinstance(t, str) and t.strip()]
    return sorted(set(cleaned))


async def create_agent(
    services: AgentServices, workspace_id: str, email: str, name: str, teams: list[str] | None = None
) -> dict[str, Any]:
    email = normalize_email(email)
    document: dict[str, Any] = {
        "_id": new_id("agt"),
        "workspace_id": workspace_id,
        "email": email,
        "name": agent_name(name),
        "available": True,
        "teams": _teams(teams),
        "created_at": services.clock.now(),
    }
    if not await services.agents.insert(document):
        raise Conflict(f"an agent with e-mail {email} already exists", field="email")
    await services.teams.ensure(workspace_id, document["teams"], document["created_at"])
    return document


async def set_agent(
    services: AgentServices, workspace_id: str, email: str, name: str, teams: list[str] | None = None
) -> dict[str, Any]:
    """Create the agent or update its name (and teams, when given): idempotent, for seeding."""
    email = normalize_email(email)
    existing = await services.agents.get_by_email(workspace_id, email)
    if existing is None:
        try:
            return await create_agent(services, workspace_id, email, name, teams)
        except Conflict:  # created concurrently: fall through to the update
            existing = await services.agents.get_by_email(workspace_id, email)
            assert existing is not None
    changes: dict[str, Any] = {"name": agent_name(name)}
    if teams is not None:
        changes["teams"] = _teams(teams)
        await services.teams.ensure(workspace_id, changes["teams"], services.clock.now())
    updated = await services.agents.update(workspace_id, existing["_id"], changes)
    assert updated is not None
    return updated


async def list_agents(services: AgentServices, workspace_id: str) -> list[dict[str, Any]]:
    return await services.agents.list(workspace_id)


async def find_agent(services: AgentServices, workspace_id: str, id_or_email: str) -> dict[str, Any]:
    found = await services.agents.find(workspace_id, id_or_email.strip())
    if found is None:
        raise NotFound(f"agent {id_or_email} not found")
    return found


async def set_agent_availability(
    services: AgentServices, workspace_id: str, agent_id: str, available: bool
) -> dict[str, Any]:
    agent = await find_agent(services, workspace_id, agent_id)
    updated = await services.agents.update(workspace_id, agent["_id"], {"available": bool(available)})
    if updated is None:
        raise NotFound(f"agent {agent_id} not found")
    return updated
