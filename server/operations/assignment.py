"""Agents' teams, and handing conversations to people and back.

Teams are named in flows (``assign`` nodes with ``team``), so a team a flow uses cannot be
renamed or deleted, and an agent a flow names (by id or e-mail) cannot be deleted or change
e-mail; an agent who still owns conversations cannot be deleted either. While a contact is
assigned, the inbox owns its messages and flows do not answer them (``screen_inbound``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from server.actors.agent_picker import AgentPicker
from server.actors.contact_actor import event_id
from server.actors.events import AssignAgent, ReleaseContact
from server.documents import ContactDoc
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import ContactKey, new_id
from server.machines.flow_walk import raw_nodes
from server.operations.agents import AgentServices, agent_name, find_agent, normalize_email
from server.operations.contact_identifiers import IdentifierServices, Who, contact_key, find_contact_key
from server.operations.flow_versions import FlowVersionServices, flows_using
from server.store.catalog import AgentTeams
from server.store.teams import POLICIES
from server.text_input import MAX_TEAM_NAME, checked_name

# --- teams --------------------------------------------------------------------------------------


class AssignmentServices(AgentServices, FlowVersionServices, IdentifierServices, Protocol):
    """What teams and conversation hand-offs use: team members, the agent picker, and the contact's actor."""

    @property
    def members(self) -> AgentTeams: ...

    @property
    def picker(self) -> AgentPicker: ...


def _policy(policy: object) -> str:
    value = str(getattr(policy, "value", policy) or "ROUND_ROBIN").upper()
    if value not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}", field="policy")
    return value


def _team_name(name: object) -> str:
    return checked_name(name, field="name", limit=MAX_TEAM_NAME, what="a team name")


async def _agent_ids(services: AssignmentServices, workspace_id: str, refs: list[str] | None) -> list[str]:
    ids: list[str] = []
    for ref in refs or []:
        found = await services.agents.find(workspace_id, str(ref).strip())
        if found is None:
            raise NotFound(f"agent {ref!r} not found", field="agentIds")
        if found["_id"] not in ids:
            ids.append(found["_id"])
    return ids


async def require_team(services: AssignmentServices, workspace_id: str, team_ref: str) -> dict[str, Any]:
    team = await services.teams.find(workspace_id, team_ref)
    if team is None:
        raise NotFound(f"team {team_ref} not found")
    return team


async def list_teams(services: AssignmentServices, workspace_id: str) -> list[dict[str, Any]]:
    return await services.teams.list(workspace_id)


async def team_members(services: AssignmentServices, workspace_id: str, name: str) -> list[dict[str, Any]]:
    return await services.members.members(workspace_id, name)


async def create_team(
    services: AssignmentServices, workspace_id: str, name: str, agent_ids: list[str] | None, policy: object
) -> dict[str, Any]:
    name = _team_name(name)
    members = await _agent_ids(services, workspace_id, agent_ids)
    document = {
        "_id": new_id("team"),
        "workspace_id": workspace_id,
        "name": name,
        "policy": _policy(policy),
        "turns": 0,
        "created_at": services.clock.now(),
    }
    if not await services.teams.insert(document):
        raise Conflict(f"a team called {name!r} already exists", field="name")
    await services.members.set_members(workspace_id, name, members)
    return document


async def update_team(
    services: AssignmentServices,
    workspace_id: str,
    team_id: str,
    name: str | None = None,
    agent_ids: list[str] | None = None,
    policy: object | None = None,
) -> dict[str, Any]:
    """Change a team's policy, members or name (a name no flow uses yet)."""
    team = await require_team(services, workspace_id, team_id)
    old_name = team["name"]
    changes: dict[str, Any] = {}
    if policy is not None:
        changes["policy"] = _policy(policy)
    new_name = _team_name(name) if name is not None else old_name
    if new_name != old_name:
        await _refuse_if_named(services, workspace_id, f"rename team {old_name!r}", _names_team(old_name))
        changes["name"] = new_name
    members = await _agent_ids(services, workspace_id, agent_ids) if agent_ids is not None else None
    if changes:
        try:
            updated = await services.teams.update(workspace_id, team["_id"], changes)
        except DuplicateKeyError:
            raise Conflict(f"a team called {new_name!r} already exists", field="name") from None
        team = updated or team
    if new_name != old_name:
        await services.members.rename(workspace_id, old_name, new_name)
    if members is not None:
        await services.members.set_members(workspace_id, new_name, members)
    return team


async def delete_team(services: AssignmentServices, workspace_id: str, team_id: str) -> bool:
    team = await require_team(services, workspace_id, team_id)
    await _refuse_if_named(services, workspace_id, f"delete team {team['name']!r}", _names_team(team["name"]))
    await services.members.remove(workspace_id, team["name"])
    return await services.teams.delete(workspace_id, team["_id"])


# --- agents (create and availability live in agents.py) ------------------------------------------


async def update_agent(
    services: AssignmentServices,
    workspace_id: str,
    agent_id: str,
    name: str | None = None,
    email: str | None = None,
    teams: list[str] | None = None,
) -> dict[str, Any]:
    agent = await find_agent(services, workspace_id, agent_id)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = agent_name(name)
    if email is not None and normalize_email(email) != agent["email"]:
        await _refuse_if_named(
            services,
            workspace_id,
            f"change the e-mail of agent {agent['email']}",
            _names_agent(agent, by_id=False),
        )
        changes["email"] = normalize_email(email)
    if teams is not None:
        names = sorted({_team_name(t) for t in teams})
        await services.teams.ensure(workspace_id, names, services.clock.now())
        changes["teams"] = names
    if not changes:
        return agent
    try:
        updated = await services.agents.update(workspace_id, agent["_id"], changes)
    except DuplicateKeyError:
        raise Conflict(f"an agent with e-mail {changes.get('email')} already exists", field="email") from None
    if updated is None:
        raise NotFound(f"agent {agent_id} not found")
    return updated


async def delete_agent(services: AssignmentServices, workspace_id: str, agent_id: str) -> bool:
    """Delete an agent no flow names and who owns no conversation (release or reassign them first)."""
    agent = await find_agent(services, workspace_id, agent_id)
    await _refuse_if_named(services, workspace_id, f"delete agent {agent['email']}", _names_agent(agent))
    owned = (await services.contacts.open_counts(workspace_id, [agent["_id"]]))[agent["_id"]]
    if owned:
        raise Conflict(
            f"cannot delete agent {agent['email']}: they own {owned} conversation(s); "
            "release or reassign them first",
            conversations=owned,
        )
    return await services.agents.delete(workspace_id, agent["_id"])


# --- who uses what ------------------------------------------------------------------------------


def _names_team(name: str) -> Callable[[Any], bool]:
    return lambda definition: any(n.get("team") == name for n in raw_nodes(definition, "assign"))


def _names_agent(agent: dict[str, Any], by_id: bool = True) -> Callable[[Any], bool]:
    def names(definition: Any) -> bool:
        for node in raw_nodes(definition, "assign"):
            ref = node.get("agent")
            if isinstance(ref, str) and (
                ref.strip().lower() == agent["email"] or (by_id and ref == agent["_id"])
            ):
                return True
        return False

    return names


async def _refuse_if_named(
    services: AssignmentServices, workspace_id: str, action: str, uses: Callable[[Any], bool]
) -> None:
    """CONFLICT naming the flows whose draft or active version would break."""
    using = await flows_using(services, workspace_id, uses)
    if using:
        listed = ", ".join(repr(n) for n in using)
        raise Conflict(f"cannot {action}: used by flow(s) {listed}; change them first", flows=using)


# --- assignment ---------------------------------------------------------------------------------


async def assign_contact(
    services: AssignmentServices, workspace_id: str, who: Who, agent_ref: str, by: str | None = None
) -> ContactDoc:
    """Hand the conversation to an available agent (INVALID_INPUT saying why when not possible)."""
    agent, why = await services.picker.agent(workspace_id, str(agent_ref))
    if agent is None:
        raise InvalidInput(f"cannot assign {who}: {why}", field="agentId")
    key = await contact_key(services, workspace_id, who)  # after the checks: a refused call claims nothing
    return await _ask(services, key, AssignAgent(event_id(), agent, by=by))


async def assign_to_team(
    services: AssignmentServices,
    workspace_id: str,
    who: Who,
    team: str,
    strategy: str | None = None,
    by: str | None = None,
) -> ContactDoc:
    """Hand the conversation to a team member picked by the team's policy (or ``strategy``)."""
    agent, why = await services.picker.from_team(workspace_id, team, strategy)
    if agent is None:
        raise InvalidInput(f"cannot assign {who}: {why}", field="team")
    key = await contact_key(services, workspace_id, who)  # after the checks: a refused call claims nothing
    found = await services.teams.find(workspace_id, team)
    return await _ask(
        services, key, AssignAgent(event_id(), agent, team=found["name"] if found else team, by=by)
    )


async def release_contact(
    services: AssignmentServices, workspace_id: str, who: Who, by: str | None = None
) -> ContactDoc:
    """Give the conversation back to the flows (a no-op when nobody owns it)."""
    key = await find_contact_key(services, workspace_id, who)
    contact = await _ask(services, key, ReleaseContact(event_id(), by=by)) if key is not None else None
    if contact is None or contact.get("version", 0) == 0:
        raise NotFound(f"no contact known as {who}")
    return contact


async def _ask(services: AssignmentServices, key: ContactKey, event: Any) -> ContactDoc:
    return (await services.actors.ask(key, event)).contact
