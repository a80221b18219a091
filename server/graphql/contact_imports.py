"""GraphQL surface of contact import jobs: start one, add rows, read it, follow its progress.

Mixins the root ``Query``/``Mutation``/``Subscription`` inherit; ADMIN only, like
``importContacts``. The work is ``server/operations/contact_import.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from server.errors import InvalidInput, NotFound
from server.graphql.contacts import caller
from server.graphql.context import TenantInfo
from server.graphql.permissions import ADMIN_ONLY
from server.operations.contact_import import import_topic

MAX_ERRORS_PAGE = 1000


@strawberry.type(description="a row an import refused, and why")
class ImportRowError:
    index: int = strawberry.field(description="the row's position in the file, from 0")
    field: str = strawberry.field(description="what is wrong: rows, row N: phone, the field or tag")
    code: str = strawberry.field(description="INVALID_INPUT or NOT_FOUND")
    message: str


@strawberry.type(description="a contact import: rows stored, then applied in batches")
class ImportJob:
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.doc["_id"])

    @strawberry.field(description="running (rows arriving or being applied) or completed")
    def status(self) -> str:
        return str(self.doc["status"])

    @strawberry.field(description="more rows are expected (addContactImportRows)")
    def receiving(self) -> bool:
        return bool(self.doc.get("more"))

    @strawberry.field(description="rows received so far")
    def total(self) -> int:
        return int(self.doc.get("total", 0))

    @strawberry.field(description="rows applied or refused so far")
    def processed(self) -> int:
        return int(self.doc.get("processed", 0))

    @strawberry.field(description="rows that created a contact")
    def created(self) -> int:
        return int(self.doc.get("created", 0))

    @strawberry.field(description="rows that changed a contact already stored")
    def updated(self) -> int:
        return int(self.doc.get("updated", 0))

    @strawberry.field(description="rows whose contact already held all of it (a re-import)")
    def unchanged(self) -> int:
        return int(self.doc.get("unchanged", 0))

    @strawberry.field(description="rows refused (see errors)")
    def refused(self) -> int:
        return int(self.doc.get("refused", 0))

    @strawberry.field
    def created_at(self) -> datetime:
        return self.doc["created_at"]

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return self.doc.get("finished_at")

    @strawberry.field(description="refused rows in row order: first (at most 1,000) after skipping `skip`")
    async def errors(self, info: TenantInfo, first: int = 100, skip: int = 0) -> list[ImportRowError]:
        if not 1 <= first <= MAX_ERRORS_PAGE:
            raise InvalidInput(f"first must be between 1 and {MAX_ERRORS_PAGE}", field="first")
        if skip < 0:
            raise InvalidInput("skip must be 0 or more", field="skip")
        found = await info.context.imports.jobs.refusals(self.doc["_id"], skip, first)
        return [ImportRowError(**refusal) for refusal in found]


@strawberry.type
class ImportQuery:
    @strawberry.field(permission_classes=ADMIN_ONLY, description="a contact import job of this workspace")
    async def import_job(self, info: TenantInfo, id: strawberry.ID) -> ImportJob | None:
        found = await info.context.imports.jobs.get(info.context.workspace(), str(id))
        return ImportJob(doc=found) if found else None


@strawberry.type
class ImportMutation:
    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="import contacts in the background, any number of rows: every valid row is stored "
        "(a refused one is reported with its index and reason, the others go on); more: true when further "
        "rows follow through addContactImportRows (a request body is bounded). Read it with importJob or "
        "follow importProgress",
    )
    async def start_contact_import(self, info: TenantInfo, rows: JSON, more: bool = False) -> ImportJob:
        ctx = info.context
        return ImportJob(doc=await info.context.imports.start(ctx.workspace(), rows, more, caller(info)))

    @strawberry.mutation(
        permission_classes=ADMIN_ONLY,
        description="the next rows of an import started with more: true (more: false on the last call)",
    )
    async def add_contact_import_rows(
        self, info: TenantInfo, job_id: strawberry.ID, rows: JSON, more: bool = False
    ) -> ImportJob:
        ctx = info.context
        return ImportJob(doc=await info.context.imports.add(ctx.workspace(), str(job_id), rows, more))


@strawberry.type
class ImportSubscription:
    @strawberry.subscription(
        permission_classes=ADMIN_ONLY,
        description="the import job at once, then after every batch, until it completes",
    )
    async def import_progress(
        self, info: TenantInfo, job_id: strawberry.ID
    ) -> AsyncGenerator[ImportJob, None]:
        ctx = info.context
        workspace_id = ctx.workspace()
        imports = info.context.imports
        updates = ctx.services.pubsub.subscribe(import_topic(str(job_id)))
        try:
            current = await imports.jobs.get(workspace_id, str(job_id))
            if current is None:
                raise NotFound(f"no import job {job_id}", field="jobId")
            seen = current.get("processed", 0)
            yield ImportJob(doc=current)
            while current["status"] != "completed":
                published = await updates.__anext__()
                if published.get("workspace_id") != workspace_id:
                    continue
                if published["status"] == "completed" or published.get("processed", 0) > seen:
                    current, seen = published, published.get("processed", 0)
                    yield ImportJob(doc=current)
        finally:
            await updates.aclose()
