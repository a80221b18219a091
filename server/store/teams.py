"""Teams of agents: a name flows refer to, an assignment policy and a shared round-robin counter.

Membership lives on the agents (``agents.teams`` holds team names), so an agent's teams and a
team's members can never disagree; this collection holds what belongs to the team itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from server.ids import new_id
from server.store.catalog import _Scoped

Document = dict[str, Any]
POLICIES = ("ROUND_ROBIN", "LEAST_OPEN")


class TeamRepository(_Scoped):
    """``{_id, workspace_id, name, policy: ROUND_ROBIN|LEAST_OPEN, turns, created_at}``."""

    collection_name = "teams"

    async def get_by_name(self, workspace_id: str, name: str) -> Document | None:
        return await self._docs.find_one({"workspace_id": workspace_id, "name": name})

    async def find(self, workspace_id: str, id_or_name: str) -> Document | None:
        return await self._docs.find_one(
            {"workspace_id": workspace_id, "$or": [{"_id": id_or_name}, {"name": id_or_name}]}
        )

    async def ensure(self, workspace_id: str, names: list[str], now: datetime) -> None:
        """Create teams named by agents that have no team document yet (default policy)."""
        for name in names:
            await self._docs.update_one(
                {"workspace_id": workspace_id, "name": name},
                {
                    "$setOnInsert": {
                        "_id": new_id("team"),
                        "policy": "ROUND_ROBIN",
                        "turns": 0,
                        "created_at": now,
                    }
                },
                upsert=True,
            )

    async def next_turn(self, workspace_id: str, name: str) -> int:
        """Atomically take the team's next round-robin number (shared by every process)."""
        found = await self._docs.find_one_and_update(
            {"workspace_id": workspace_id, "name": name},
            {"$inc": {"turns": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return int((found or {}).get("turns") or 0)
