"""The operator API: ``POST /operator/graphql``, a schema of its own for whoever runs the server.

It creates, lists, disables, enables and deletes workspaces (``server/operations/workspace_admin.py``)
and ``konvo workspace`` drives it. It is a separate endpoint with a separate schema, not fields of
the tenant API guarded by a role: a workspace key can reach nothing of it, the tenant schema does
not even show it exists, and a proxy can keep ``/operator/`` off the internet altogether.

- **Off unless configured**: without ``KONVO_OPERATOR_KEY`` the route is not mounted (404).
- **Authentication**: ``Authorization: Bearer <KONVO_OPERATOR_KEY>``, compared in constant time;
  workspace API keys are never looked up here.
- **Limits**: the tenant API's depth, token, alias and cost limits, and a rate window of its own
  (``KONVO_OPERATOR_RATE_LIMIT_POINTS`` cost points per ``KONVO_RATE_LIMIT_WINDOW_SECONDS``);
  failed authentications count per client address against the same number, so the key cannot be
  guessed at speed (HTTP 429 ``RATE_LIMITED``).
- **Logs**: each operation is one line with what it did to which workspace and the client's
  address; never the operator key, nor the ADMIN key a new workspace gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import strawberry
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission

from server.errors import Unauthenticated
from server.graphql.errors import CodedErrors, CodedSchema
from server.graphql.limits import RateLimiter
from server.graphql.pagination import PageInfo, decode_cursor, encode_cursor, page_size
from server.graphql.types import Workspace, WorkspaceStatus
from server.operations import workspace_admin as admin
from server.services import Services

log = logging.getLogger(__name__)

PATH = "/operator/graphql"
OPERATOR_KEY_ID = "operator"  # the rate window's name; never the key itself


class OperatorContext:
    """Per request: the services, whether the caller holds the operator key, and from where."""

    def __init__(
        self,
        services: Services,
        request: HTTPConnection,
        response: Response | WebSocket,
        rate_limiter: RateLimiter,
    ) -> None:
        self.services = services
        self.request = request
        self.response = response
        self.rate_limiter = rate_limiter
        self.key_id: str | None = None  # set once authenticated: the limits extension spends on it
        self.client = _client_address(request)


OperatorInfo = strawberry.Info[OperatorContext, None]
"""What a resolver of the operator API is given."""


class OperatorOnly(BasePermission):
    message = "send the operator key: Authorization: Bearer <KONVO_OPERATOR_KEY>"

    def has_permission(self, source: object, info: OperatorInfo, **kwargs: Any) -> bool:
        if info.context.key_id != OPERATOR_KEY_ID:
            raise Unauthenticated(self.message)
        return True


# Typed as strawberry's parameter is (a list, invariant): ``[OperatorOnly]`` alone would not pass.
OPERATOR: list[type[BasePermission]] = [OperatorOnly]


@strawberry.input
class CreateWorkspaceInput:
    name: str
    timezone: str = strawberry.field(description="IANA time zone, e.g. Europe/Madrid")
    locale: str | None = strawberry.field(
        default=None, description="BCP 47, e.g. es-ES; omitted: the default country's or time zone's"
    )
    default_country: str | None = strawberry.field(
        default=None, description="ISO 3166 country national phone numbers belong to, e.g. ES"
    )


@strawberry.type
class CreatedWorkspace:
    workspace: Workspace
    admin_key: str = strawberry.field(
        description="the workspace's first ADMIN API key: shown now and never again (only its hash is kept)"
    )


@strawberry.type
class DeletedDocuments:
    collection: str
    count: int


@strawberry.type(description="what deleting a workspace removed; nothing of it is left once finished")
class WorkspaceDeletion:
    workspace_id: strawberry.ID
    documents: int
    collections: list[DeletedDocuments]
    redis_keys: int
    queued_jobs: int
    finished: bool = strawberry.field(
        default=True,
        description="false: work of the workspace may still have been in flight (see undrainedReplicas), "
        "so it stays DELETING; run deleteWorkspace again to finish",
    )
    undrained_replicas: list[str] = strawberry.field(
        default_factory=list,
        description="live replicas that did not confirm in time that their work of the workspace ended",
    )

    @classmethod
    def of(cls, deletion: admin.Deletion) -> WorkspaceDeletion:
        return cls(
            workspace_id=strawberry.ID(deletion.workspace_id),
            documents=sum(deletion.documents.values()),
            collections=[
                DeletedDocuments(collection=c, count=n) for c, n in sorted(deletion.documents.items())
            ],
            redis_keys=deletion.redis.keys,
            queued_jobs=deletion.redis.jobs,
            finished=deletion.finished,
            undrained_replicas=deletion.undrained,
        )


@strawberry.type
class WorkspaceEdge:
    cursor: str
    node: Workspace


@strawberry.type
class WorkspaceConnection:
    edges: list[WorkspaceEdge]
    page_info: PageInfo


@strawberry.type
class OperatorQuery:
    @strawberry.field(permission_classes=OPERATOR, description="workspaces, oldest first")
    async def workspaces(
        self,
        info: OperatorInfo,
        status: WorkspaceStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> WorkspaceConnection:
        limit = page_size(first)
        cursor = decode_cursor(after)
        found = await admin.list_workspaces(
            info.context.services,
            status.value if status else None,
            str(cursor[0]) if cursor else None,
            limit + 1,
        )
        edges = [WorkspaceEdge(cursor=encode_cursor([w["_id"]]), node=Workspace.of(w)) for w in found[:limit]]
        return WorkspaceConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(found) > limit, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(permission_classes=OPERATOR)
    async def workspace(self, info: OperatorInfo, id: strawberry.ID) -> Workspace | None:
        found = await info.context.services.workspaces.get(str(id))
        return Workspace.of(found) if found else None


@strawberry.type
class OperatorMutation:
    @strawberry.mutation(
        permission_classes=OPERATOR, description="a new workspace and its first ADMIN key (shown once)"
    )
    async def create_workspace(self, info: OperatorInfo, input: CreateWorkspaceInput) -> CreatedWorkspace:
        spec = admin.NewWorkspace(
            name=input.name,
            timezone=input.timezone,
            locale=input.locale,
            default_country=input.default_country,
        )
        document, api_key = await admin.create_workspace(info.context.services, spec)
        _audit(info, "createWorkspace", document["_id"])
        return CreatedWorkspace(workspace=Workspace.of(document), admin_key=api_key)

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="stop a workspace: its keys are refused (WORKSPACE_DISABLED), its webhooks answered "
        "410 and its timers and broadcasts held until it is enabled again; nothing is deleted",
    )
    async def disable_workspace(self, info: OperatorInfo, id: strawberry.ID) -> Workspace:
        document = await admin.disable_workspace(info.context.services, str(id))
        _audit(info, "disableWorkspace", str(id))
        return Workspace.of(document)

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="let a disabled workspace work again; timers that fell due meanwhile fire now",
    )
    async def enable_workspace(self, info: OperatorInfo, id: strawberry.ID) -> Workspace:
        document = await admin.enable_workspace(info.context.services, str(id))
        _audit(info, "enableWorkspace", str(id))
        return Workspace.of(document)

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="delete the workspace and everything of it, in the store and in Redis; not undoable",
    )
    async def delete_workspace(self, info: OperatorInfo, id: strawberry.ID) -> WorkspaceDeletion:
        deletion = await admin.delete_workspace(info.context.services, str(id))
        _audit(info, "deleteWorkspace", str(id))
        return WorkspaceDeletion.of(deletion)


def _audit(info: OperatorInfo, operation: str, workspace_id: str) -> None:
    log.info("operator %s %s from %s", operation, workspace_id, info.context.client)


def build_operator_schema(*extensions: Callable[[], SchemaExtension]) -> strawberry.Schema:
    return CodedSchema(query=OperatorQuery, mutation=OperatorMutation, extensions=[*extensions, CodedErrors])


operator_schema = build_operator_schema()  # for exporting the SDL


def _client_address(request: HTTPConnection) -> str:
    client = request.client  # None where the ASGI server does not say (e.g. a Unix socket)
    return client.host if client is not None else "unknown"
