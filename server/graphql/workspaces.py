"""GraphQL for the workspace's own settings (mixin of the root ``Mutation``)."""

from __future__ import annotations

import strawberry

from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.graphql.types import Workspace
from server.operations import workspaces as workspace_ops


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="change the workspace's settings (omitted or null: unchanged): its name, the time zone "
        "(IANA, e.g. Europe/Madrid) and locale (BCP 47, e.g. es-ES) customers' dates and numbers are "
        'read and written in, the default country of national phone numbers (ISO 3166, e.g. ES; "" '
        "clears it) and its own opt-out words (the whole list; STOP and BAJA always apply)",
    )
    async def update_workspace(
        self,
        info: TenantInfo,
        timezone: str | None = None,
        locale: str | None = None,
        name: str | None = None,
        default_country: str | None = None,
        opt_out_keywords: list[str] | None = None,
    ) -> Workspace:
        ctx = info.context
        changes = workspace_ops.WorkspaceChanges(
            name=name,
            timezone=timezone,
            locale=locale,
            default_country=default_country,
            opt_out_keywords=opt_out_keywords,
        )
        found = await workspace_ops.update_workspace(ctx.services, ctx.admin_workspace(), changes)
        return Workspace.of(found)
