"""Per-request context: the services, and the workspace, role and key of the caller's API key.

Resolvers call ``workspace()`` to scope every read and write; role rules are declared on the
fields (``server.graphql.permissions``), ``admin_workspace()`` stays for resolvers that check inline.
A WebSocket keeps one context for its life: a key's workspace and role never change, but it can
be revoked, so the view re-checks the key before each operation (``key_guard.KeyGuard``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from server.errors import Forbidden, Unauthenticated
from server.graphql.key_guard import KeyGuard
from server.graphql.limits import RateLimiter
from server.graphql.permissions import auth_failure
from server.operations.contact_import import ContactImports
from server.services import Services
from server.store.workspaces import ADMIN, ROLES
from server.workspace_gate import refusal

__all__ = ["ROLES", "Context", "TenantInfo", "bearer_token"]


def bearer_token(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return value.strip() or None


@dataclass
class Context:
    services: Services
    key_guard: KeyGuard  # revoking a key closes its sockets on every process
    imports: ContactImports  # this process's import workers
    # None where a test or tool executes the schema without a transport.
    request: Request | WebSocket | None = None
    response: Response | WebSocket | None = None  # HTTP: the sub-response whose status and headers are sent
    workspace_id: str | None = None
    role: str | None = None
    key_id: str | None = None
    agent_id: str | None = None
    auth_error: str | None = None
    auth_code: str = Unauthenticated.code  # WORKSPACE_DISABLED for a key of a disabled workspace
    rate_limiter: RateLimiter | None = None
    connection_params: dict[str, Any] = field(default_factory=dict)
    # SUPPORT tag names per workspace with when they expire (server.graphql.inbox): a WebSocket's
    # context lives as long as the socket, so the names are re-read every few seconds.
    support_tags: dict[str, tuple[float, set[str]]] = field(default_factory=dict)

    async def authenticate(self, authorization: object) -> bool:
        token = bearer_token(authorization)
        self.auth_code = Unauthenticated.code
        if token is None:
            self.auth_error = "send an API key: Authorization: Bearer <key>"
            return False
        key = await self.services.workspaces.find_key(token)
        if key is None:
            self.auth_error = "the API key is unknown or revoked"
            return False
        stopped = refusal(key["workspace_id"], await self.services.workspace_gate.status(key["workspace_id"]))
        if stopped is not None:
            self.auth_error, self.auth_code = stopped.message, stopped.code
            return False
        self.workspace_id = key["workspace_id"]
        self.role = key.get("role", ADMIN)
        self.key_id = key.get("key_id") or key["_id"]
        self.agent_id = key.get("agent_id")
        self.auth_error = None
        return True

    def base_url(self) -> str:
        """This server's URL as the caller reached it (the webhook URLs the API shows start with it);
        without a transport, the configured host and port."""
        if self.request is not None:
            return str(self.request.base_url).rstrip("/")
        settings = self.services.settings
        return f"http://{settings.host}:{settings.port}"

    def workspace(self) -> str:
        if self.workspace_id is None:
            raise auth_failure(self.auth_code, self.auth_error)
        return self.workspace_id

    def admin_workspace(self) -> str:
        workspace_id = self.workspace()
        if self.role != ADMIN:
            raise Forbidden("this API key's role cannot do that; an ADMIN key is needed")
        return workspace_id


TenantInfo = strawberry.Info[Context, None]
"""What a resolver of the tenant API is given: ``info.context`` is this request's ``Context``."""
