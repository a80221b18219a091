"""Who gets a conversation: a named agent, or a team member by round robin or least open load.

Only agents marked available are picked. Round robin takes a number from the team's shared
counter (one atomic ``$inc`` in the store, so every server process takes turns on the same
sequence); least open counts the conversations each member owns now, ties going by e-mail.
Imports no services, so the composition root can build it.
"""

from __future__ import annotations

from typing import Any

from server.clock import Clock
from server.machines.turn import AssignRequest
from server.store.catalog import AgentRepository, AgentTeams
from server.store.contacts import ContactRepository
from server.store.teams import TeamRepository

Agent = dict[str, Any]
# The node's lower-case strategies and the API's policies, as one vocabulary.
STRATEGIES = {"round_robin": "ROUND_ROBIN", "least_busy": "LEAST_OPEN", "least_open": "LEAST_OPEN"}


class AgentPicker:
    def __init__(
        self,
        agents: AgentRepository,
        members: AgentTeams,
        teams: TeamRepository,
        contacts: ContactRepository,
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._agents = agents
        self._members = members
        self._teams = teams
        self._contacts = contacts

    async def for_node(
        self, workspace_id: str, request: AssignRequest, take_turn: bool = True
    ) -> tuple[Agent | None, str | None]:
        """The agent for an ``assign`` node (the actor's ``assigner``), or None and why not.

        ``take_turn`` False (the flow simulator): the agent a round robin would pick now,
        without taking the team's number, so nothing is written."""
        if request.agent:
            return await self.agent(workspace_id, request.agent)
        if request.team:
            return await self.from_team(workspace_id, request.team, request.strategy, take_turn)
        return None, "the assign node names no agent and no team"

    async def agent(self, workspace_id: str, id_or_email: str) -> tuple[Agent | None, str | None]:
        found = await self._agents.find(workspace_id, id_or_email.strip())
        if found is None:
            return None, f"agent {id_or_email!r} does not exist"
        if not found.get("available", True):
            return None, f"agent {found['email']} is not available"
        return found, None

    async def from_team(
        self, workspace_id: str, team_ref: str, strategy: str | None = None, take_turn: bool = True
    ) -> tuple[Agent | None, str | None]:
        team = await self._teams.find(workspace_id, team_ref)
        name = team["name"] if team else team_ref
        members = await self._members.members(workspace_id, name)
        if team is None and not members:
            return None, f"team {team_ref!r} does not exist"
        available = [a for a in members if a.get("available", True)]
        if not available:
            return None, f"no agent of team {name!r} is available ({len(members)} member(s), none available)"
        policy = STRATEGIES.get((strategy or "").lower()) or (team or {}).get("policy") or "ROUND_ROBIN"
        if policy == "LEAST_OPEN":
            load = await self._contacts.open_counts(workspace_id, [a["_id"] for a in available])
            return min(available, key=lambda a: (load.get(a["_id"], 0), a["email"])), None
        if not take_turn:
            turn = int((team or {}).get("turns") or 0) + 1  # the number the next pick takes
        else:
            if team is None:
                await self._teams.ensure(workspace_id, [name], self._clock.now())
            turn = await self._teams.next_turn(workspace_id, name)
        return available[(turn - 1) % len(available)], None
