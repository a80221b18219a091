"""GraphQL for the workspace's own settings (mixin of the root ``Mutation``)."""

from __future__ import annotations

import strawberry

from server.graphql.permissions import ADMIN_ONLY
from server.graphql.types import Workspace
from server.operations import workspaces as workspace_ops


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="set the time zone (IANA, e.g. Europe/Madrid) and/or the locale (BCP 47, e.g. "
        "es-ES) customers' dates and numbers are read and written in",
    )
    async def update_workspace(
        self, info: strawberry.Info, timezone: str | None = None, locale: str | None = None
    ) -> Workspace:
        ctx = info.context
        found = await workspace_ops.update_workspace(ctx.runtime, ctx.admin_workspace(), timezone, locale)
        return Workspace.of(found)
