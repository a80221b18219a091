"""A contact's tags and typed variables from the API and imports, applied through its actor.

Every value is checked against its field with ``coerce_value`` (the same rule flows use), and a
wrong one is refused with INVALID_INPUT naming the field and its expected type. Tags must exist
in the catalog, so a typo cannot create a tag no segment or inbox knows about.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.actors.contact_actor import event_id
from server.actors.events import ImportContact, SetVariables, TagContact
from server.clock import Timing
from server.documents import ContactDoc
from server.errors import Conflict, InvalidInput, NotFound, Unavailable
from server.identity import Identities
from server.machines.regional import Regional
from server.machines.values import coerce_value
from server.operations.contact_identifiers import (
    IdentifierServices,
    PhoneServices,
    Who,
    contact_key,
    contact_phone,
)
from server.operations.tags import normalize_tag_name
from server.services import ActorsHandle
from server.store.catalog import FieldRepository, TagRepository
from server.text_input import checked_characters

MAX_IMPORT_ROWS = 1000
IMPORT_CONCURRENCY = 32
ROW_ATTEMPTS = 4


class ContactCheckServices(PhoneServices, Protocol):
    """Checking a contact's tags and variables against the workspace's fields and tags."""

    @property
    def fields(self) -> FieldRepository: ...

    @property
    def tags(self) -> TagRepository: ...


class ContactDataServices(ContactCheckServices, IdentifierServices, Protocol):
    """Applying tags and variables through the contact's actor (imports pace with the timing)."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def timing(self) -> Timing: ...


def checked_value(
    field_doc: dict[str, Any], raw: Any, where: str = "", regional: Regional | None = None
) -> Any:
    """``raw`` as the field stores it, or INVALID_INPUT saying which field and what it expects.

    ``regional``: the workspace's zone and locale ("24/12/2026" is a day there, at its midnight).
    """
    if isinstance(raw, str):
        checked_characters(raw, field=field_doc["name"], what=f"{where}the value of {field_doc['name']!r}")
    try:
        return coerce_value(field_doc["type"], field_doc.get("options"), raw, regional)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{where}field {field_doc['name']!r} ({field_doc['type']}): {exc.message}",
            field=field_doc["name"],
            expectedType=field_doc["type"],
        ) from None


async def _tag_name(services: ContactCheckServices, workspace_id: str, tag: Any, where: str = "") -> str:
    name = normalize_tag_name(tag, field="tag")
    if await services.tags.get_by_name(workspace_id, name) is None:
        raise NotFound(f"{where}no tag called {name!r}; create it first (createTag)", field="tag")
    return name


async def tag_contact(
    services: ContactDataServices, workspace_id: str, who: Who, tag: str, add: bool
) -> ContactDoc:
    name = await _tag_name(services, workspace_id, tag)  # checked first: a refused call claims nothing
    key = await contact_key(services, workspace_id, who)
    event = TagContact(event_id(), add=(name,)) if add else TagContact(event_id(), remove=(name,))
    return (await services.actors.ask(key, event)).contact


async def set_variable(
    services: ContactDataServices, workspace_id: str, who: Who, field: str, value: Any
) -> ContactDoc:
    field_doc = await services.fields.get_by_name(workspace_id, str(field).strip())
    if field_doc is None:
        raise NotFound(f"no field called {field!r}; create it first (createField)", field="field")
    coerced = checked_value(field_doc, value, regional=await services.caches.regional_of(workspace_id))
    links = {field_doc["name"]: field_doc["external"]} if field_doc.get("external") else {}
    event = SetVariables(event_id(), {field_doc["name"]: coerced}, links)
    key = await contact_key(services, workspace_id, who)  # last: a refused call claims no identity
    return (await services.actors.ask(key, event)).contact


@dataclass(frozen=True)
class ContactData:
    """Typed contact fields and tags a flow start writes in its first turn (``StartFlow.contact``)."""

    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values or self.tags)


async def check_contact_names(
    services: ContactCheckServices, workspace_id: str, names: list[str], tags: list[Any], where: str
) -> None:
    """Every field name and tag exists in the workspace's catalog, or INVALID_INPUT naming it.

    Used when a trigger is created, so a mapping cannot name a field that is not there.
    """
    for name in names:
        if await services.fields.get_by_name(workspace_id, name) is None:
            raise InvalidInput(
                f"{where}.fields.{name}: no field called {name!r}; create it first (createField)",
                field=f"{where}.fields.{name}",
            )
    for tag in tags:
        await _tag_name(services, workspace_id, tag, f"{where}.tags: ")


async def checked_contact_data(
    services: ContactCheckServices, workspace_id: str, raw: Any, where: str = "contact"
) -> ContactData:
    """``{fields: {name: value}, tags: [name]}`` typed against the workspace's fields and tags.

    A FIXED field takes only its options, a DATE is read in the workspace's zone, a field or tag
    the catalog lacks is refused (INVALID_INPUT / NOT_FOUND naming ``where.fields.<name>``).
    """
    if raw is None:
        return ContactData()
    if not isinstance(raw, dict) or set(raw) - {"fields", "tags"}:
        raise InvalidInput(
            f'{where} must be an object {{"fields": {{name: value}}, "tags": [name]}}', field=where
        )
    fields = raw.get("fields") or {}
    tags = raw.get("tags") or []
    if not isinstance(fields, dict):
        raise InvalidInput(f"{where}.fields must be an object of field: value", field=f"{where}.fields")
    if not isinstance(tags, list):
        raise InvalidInput(f"{where}.tags must be a list of tag names", field=f"{where}.tags")
    regional = await services.caches.regional_of(workspace_id)
    values: dict[str, Any] = {}
    links: dict[str, dict[str, Any]] = {}
    for name, value in fields.items():
        field_doc = await services.fields.get_by_name(workspace_id, str(name).strip())
        if field_doc is None:
            raise NotFound(
                f"{where}.fields.{name}: no field called {name!r}; create it first (createField)",
                field=f"{where}.fields.{name}",
            )
        values[field_doc["name"]] = checked_value(field_doc, value, f"{where}: ", regional)
        if field_doc.get("external"):
            links[field_doc["name"]] = field_doc["external"]
    names = [await _tag_name(services, workspace_id, tag, f"{where}.tags: ") for tag in tags]
    return ContactData(values, links, tuple(dict.fromkeys(names)))


@dataclass
class ImportRow:
    identities: Identities
    variables: dict[str, Any] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    opted_in: bool | None = None


@dataclass(frozen=True)
class RowRefusal:
    """Why row ``index`` (its position in the rows, from 0) was not imported, naming the field."""

    index: int
    field: str
    code: str
    message: str

    def view(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "code": self.code, "message": self.message}


@dataclass
class ImportOutcome:
    """What applying rows did: contacts created, updated or already holding everything."""

    contacts: list[ContactDoc] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0


class RowChecker:
    """Checks import rows against the workspace's fields and tags (read once per import)."""

    def __init__(self, services: ContactCheckServices, workspace_id: str) -> None:
        self._services = services
        self._workspace_id = workspace_id
        self._fields: dict[str, dict[str, Any]] | None = None
        self._tags: dict[str, bool] = {}
        self._regional: Regional | None = None

    async def check(self, row: Any, index: int) -> ImportRow | RowRefusal:
        """The row ready to apply, or why it is refused (INVALID_INPUT / NOT_FOUND, field named)."""
        try:
            return await self._check(row, index)
        except (InvalidInput, NotFound) as exc:
            where = str(exc.details.get("field") or "rows")
            return RowRefusal(index, where, exc.code, exc.message)

    async def _check(self, row: Any, index: int) -> ImportRow:
        services, workspace_id = self._services, self._workspace_id
        if self._fields is None:
            self._fields = {f["name"]: f for f in await services.fields.list(workspace_id)}
            self._regional = await services.caches.regional_of(workspace_id)
        where = f"row {index + 1}: "
        if not isinstance(row, dict):
            raise InvalidInput(f"{where}must be an object with a phone", field="rows")
        unknown = set(row) - {"phone", "variables", "tags", "optedIn"}
        if unknown:
            raise InvalidInput(f"{where}unknown key(s) {', '.join(sorted(unknown))}", field="rows")
        # a row names its contact by phone only (parse_phone says what is wrong with it)
        phone = await contact_phone(services, workspace_id, row.get("phone"), field=f"{where}phone")
        result = ImportRow(Identities(phone=phone))
        variables = row.get("variables") or {}
        if not isinstance(variables, dict):
            raise InvalidInput(f"{where}variables must be an object of field: value", field="variables")
        for name, raw in variables.items():
            field_doc = self._fields.get(name)
            if field_doc is None:
                raise NotFound(
                    f"{where}no field called {name!r}; create it first (createField)", field="field"
                )
            result.variables[name] = checked_value(field_doc, raw, where, self._regional)
            if field_doc.get("external"):
                result.links[name] = field_doc["external"]
        tags = row.get("tags") or []
        if not isinstance(tags, list):
            raise InvalidInput(f"{where}tags must be a list of tag names", field="tags")
        result.tags = tuple(dict.fromkeys([await self._tag(t, where) for t in tags]))
        opted_in = row.get("optedIn")
        if opted_in is not None and not isinstance(opted_in, bool):
            raise InvalidInput(f"{where}optedIn must be true or false", field="optedIn")
        result.opted_in = opted_in
        return result

    async def _tag(self, tag: Any, where: str) -> str:
        name = normalize_tag_name(tag, field="tag")
        if name not in self._tags:
            self._tags[name] = await self._services.tags.get_by_name(self._workspace_id, name) is not None
        if not self._tags[name]:
            raise NotFound(f"{where}no tag called {name!r}; create it first (createTag)", field="tag")
        return name


async def apply_rows(
    services: ContactDataServices, workspace_id: str, rows: list[ImportRow], outcome: ImportOutcome
) -> None:
    """Apply checked rows, ``IMPORT_CONCURRENCY`` contacts at a time (their turns share commits).

    Each row is one turn of its contact (``ImportContact``): created, updated, or unchanged when
    it already held everything (a re-import). Rows naming one person twice apply in order.
    """
    gate = asyncio.Semaphore(IMPORT_CONCURRENCY)
    locks: dict[str, asyncio.Lock] = {}

    async def one(row: ImportRow) -> ContactDoc:
        async with gate:
            resolved = await services.directory.resolve(workspace_id, row.identities)
            assert resolved is not None  # resolve creates
            lock = locks.setdefault(resolved.key.doc_id, asyncio.Lock())
            async with lock:
                for attempt in range(1, ROW_ATTEMPTS + 1):
                    event = ImportContact(event_id(), row.variables, row.links, row.tags, row.opted_in)
                    try:
                        result = await services.actors.ask(resolved.key, event)
                        break
                    except (Unavailable, Conflict):  # a shard changing hands, a contended contact
                        if attempt == ROW_ATTEMPTS:
                            raise
                        await services.timing.sleep(0.2 * attempt)  # applying the row again is harmless
        if not result.changed:
            outcome.unchanged += 1
        elif result.contact["version"] == 1:
            outcome.created += 1
        else:
            outcome.updated += 1
        return result.contact

    outcome.contacts += await asyncio.gather(*(one(row) for row in rows))


async def import_contacts(services: ContactDataServices, workspace_id: str, rows: Any) -> ImportOutcome:
    """Create or update contacts from rows ``{phone, variables?, tags?, optedIn?}`` (at most 1,000).

    Every row is checked before any is applied, so a bad row leaves the workspace untouched; the
    error names the first refused row and lists every one (``extensions.rows``: index, field,
    code, message). Larger imports, and imports that keep the valid rows of a file with bad ones,
    are jobs (``server/operations/contact_import.py``).
    """
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("rows must be a non-empty list of {phone, variables, tags, optedIn}", field="rows")
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput(
            f"import at most {MAX_IMPORT_ROWS} rows per call; larger files go through startContactImport",
            field="rows",
        )
    checker = RowChecker(services, workspace_id)
    checked = [await checker.check(row, n) for n, row in enumerate(rows)]
    refused = [c for c in checked if isinstance(c, RowRefusal)]
    if refused:
        first = refused[0]
        error = InvalidInput if first.code == "INVALID_INPUT" else NotFound
        raise error(
            first.message
            + (
                f" (and {len(refused) - 1} more refused row(s); nothing was imported)"
                if len(refused) > 1
                else ""
            ),
            field=first.field,
            rows=[r.view() for r in refused],
        )
    outcome = ImportOutcome()
    await apply_rows(services, workspace_id, [c for c in checked if isinstance(c, ImportRow)], outcome)
    return outcome
