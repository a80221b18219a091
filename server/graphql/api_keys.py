"""API keys over GraphQL: list, create (the plain key is returned once) and revoke; ADMIN only.

``ApiKeyQuery`` / ``ApiKeyMutation`` are mixins the root types in ``schema.py`` inherit from.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from server.clock import as_utc
from server.errors import Conflict, InvalidInput, NotFound
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY, ANY_ROLE
from server.store.workspaces import ADMIN, new_api_key

MAX_NAME = 100


@strawberry.enum(description="ADMIN may do everything; AGENT works the inbox and manages nothing")
class Role(Enum):
    ADMIN = "ADMIN"
    AGENT = "AGENT"


@strawberry.type(description="an API key as stored: never the key itself, only a hint of its start")
class ApiKey:
    id: strawberry.ID
    name: str
    role: Role
    agent_id: strawberry.ID | None
    hint: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> ApiKey:
        revoked = doc.get("revoked_at")
        return cls(
            id=strawberry.ID(doc.get("key_id") or doc["_id"]),
            name=doc.get("name", ""),
            role=Role(doc.get("role", ADMIN)),
            agent_id=doc.get("agent_id"),
            hint=doc.get("hint", ""),
            created_at=as_utc(doc["created_at"]),
            revoked_at=as_utc(revoked) if revoked else None,
        )


@strawberry.type
class CreatedApiKey:
    key: str = strawberry.field(description="the plain key: shown now and never again")
    api_key: ApiKey


@strawberry.type
class ApiKeyQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY, description="this workspace's API keys")
    async def api_keys(self, info: TenantInfo, include_revoked: bool = False) -> list[ApiKey]:
        ctx = info.context
        found = await ctx.services.workspaces.list_keys(ctx.workspace(), include_revoked)
        return [ApiKey.of(d) for d in found]

    @strawberry.field(permission_classes=ANY_ROLE, description="the key this request is made with")
    async def current_api_key(self, info: TenantInfo) -> ApiKey:
        ctx = info.context
        workspace_id = ctx.workspace()
        assert ctx.key_id is not None  # authenticate sets it with the workspace
        found = await ctx.services.workspaces.get_key(workspace_id, ctx.key_id)
        if found is None:
            raise NotFound("this API key no longer exists")
        return ApiKey.of(found)


@strawberry.type
class ApiKeyMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="a new key for this workspace; an AGENT key may be tied to an agent (agentId)",
    )
    async def create_api_key(
        self, info: TenantInfo, name: str, role: Role, agent_id: strawberry.ID | None = None
    ) -> CreatedApiKey:
        ctx = info.context
        workspace_id = ctx.workspace()
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", field="name")
        if agent_id is not None:
            if role is not Role.AGENT:
                raise InvalidInput("only an AGENT key can be tied to an agent", field="agentId")
            if await ctx.services.agents.get(workspace_id, str(agent_id)) is None:
                raise NotFound(f"agent {agent_id} not found", field="agentId")
        key = new_api_key()
        document = await ctx.services.workspaces.add_key(
            workspace_id, key, role.value, name, ctx.services.clock.now(), str(agent_id) if agent_id else None
        )
        return CreatedApiKey(key=key, api_key=ApiKey.of(document))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the key stops working at once, its open WebSockets on every server process "
        "closed (4403); refused (CONFLICT) for the last ADMIN key",
    )
    async def revoke_api_key(self, info: TenantInfo, id: strawberry.ID) -> ApiKey:
        ctx = info.context
        workspace_id = ctx.workspace()
        workspaces = ctx.services.workspaces
        found = await workspaces.get_key(workspace_id, str(id))
        if found is None:
            raise NotFound(f"API key {id} not found")
        live_admin = found.get("role", ADMIN) == ADMIN and found.get("revoked_at") is None
        if live_admin and await workspaces.count_live_admin_keys(workspace_id) <= 1:
            raise Conflict("this is the workspace's last ADMIN key; create another ADMIN key first")
        revoked = await workspaces.revoke_key(workspace_id, str(id), ctx.services.clock.now())
        assert revoked is not None
        # Sockets opened with it, on any process, are closed (4403) and refuse further operations.
        await ctx.key_guard.revoke(workspace_id, revoked.get("key_id") or revoked["_id"])
        return ApiKey.of(revoked)
