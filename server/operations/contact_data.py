"""A contact's tags and typed variables from the API and imports, applied through its actor.

Every value is checked against its field with ``coerce_value`` (the same rule flows use), and a
wrong one is refused with INVALID_INPUT naming the field and its expected type. Tags must exist
in the catalog, so a typo cannot create a tag no segment or inbox knows about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.actors.contact_actor import event_id
from server.actors.events import SetConsent, SetVariables, TagContact
from server.actors.shards import ShardedActors
from server.errors import InvalidInput, NotFound
from server.ids import ContactKey
from server.machines.regional import Regional
from server.machines.values import coerce_value
from server.operations.catalog import normalize_tag_name
from server.operations.phone_input import contact_key
from server.runtime import Runtime
from server.text_input import checked_characters

MAX_IMPORT_ROWS = 1000


def _actors(runtime: Runtime) -> ShardedActors:
    assert runtime.actors is not None, "runtime not started"
    return runtime.actors


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


async def _tag_name(runtime: Runtime, workspace_id: str, tag: Any, where: str = "") -> str:
    name = normalize_tag_name(tag, field="tag")
    if await runtime.tags.get_by_name(workspace_id, name) is None:
        raise NotFound(f"{where}no tag called {name!r}; create it first (createTag)", field="tag")
    return name


async def tag_contact(runtime: Runtime, workspace_id: str, phone: str, tag: str, add: bool) -> dict[str, Any]:
    key = await contact_key(runtime, workspace_id, phone)
    name = await _tag_name(runtime, workspace_id, tag)
    event = TagContact(event_id(), add=(name,)) if add else TagContact(event_id(), remove=(name,))
    return (await _actors(runtime).ask(key, event)).contact


async def set_variable(
    runtime: Runtime, workspace_id: str, phone: str, field: str, value: Any
) -> dict[str, Any]:
    key = await contact_key(runtime, workspace_id, phone)
    field_doc = await runtime.fields.get_by_name(workspace_id, str(field).strip())
    if field_doc is None:
        raise NotFound(f"no field called {field!r}; create it first (createField)", field="field")
    coerced = checked_value(field_doc, value, regional=await runtime.regional_of(workspace_id))
    links = {field_doc["name"]: field_doc["external"]} if field_doc.get("external") else {}
    event = SetVariables(event_id(), {field_doc["name"]: coerced}, links)
    return (await _actors(runtime).ask(key, event)).contact


@dataclass
class ImportRow:
    key: ContactKey
    variables: dict[str, Any] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    opted_in: bool | None = None


async def import_contacts(runtime: Runtime, workspace_id: str, rows: Any) -> list[dict[str, Any]]:
    """Create or update contacts from rows ``{phone, variables?, tags?, optedIn?}``.

    Every row is checked before any is applied, so a bad row (named by its number and field)
    leaves the workspace untouched.
    """
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("rows must be a non-empty list of {phone, variables, tags, optedIn}", field="rows")
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput(f"import at most {MAX_IMPORT_ROWS} rows per call", field="rows")
    fields = {f["name"]: f for f in await runtime.fields.list(workspace_id)}
    regional = await runtime.regional_of(workspace_id)
    checked = [
        await _check_row(runtime, workspace_id, fields, row, n, regional) for n, row in enumerate(rows)
    ]
    contacts = []
    for row in checked:
        actors = _actors(runtime)
        result = None
        if row.variables:
            result = await actors.ask(
                row.key, SetVariables(event_id(), row.variables, row.links, source="import")
            )
        if row.tags:
            result = await actors.ask(row.key, TagContact(event_id(), add=row.tags))
        if row.opted_in is not None:
            result = await actors.ask(row.key, SetConsent(event_id(), row.opted_in, source="import"))
        contact = result.contact if result is not None else await runtime.contacts.load(row.key)
        contacts.append(contact or {"_id": row.key.doc_id, "phone": row.key.phone})
    return contacts


async def _check_row(
    runtime: Runtime,
    workspace_id: str,
    fields: dict[str, dict[str, Any]],
    row: Any,
    index: int,
    regional: Regional,
) -> ImportRow:
    where = f"row {index + 1}: "
    if not isinstance(row, dict):
        raise InvalidInput(f"{where}must be an object with a phone", field="rows")
    unknown = set(row) - {"phone", "variables", "tags", "optedIn"}
    if unknown:
        raise InvalidInput(f"{where}unknown key(s) {', '.join(sorted(unknown))}", field="rows")
    key = await contact_key(runtime, workspace_id, row.get("phone"), field=f"{where}phone")
    result = ImportRow(key)
    variables = row.get("variables") or {}
    if not isinstance(variables, dict):
        raise InvalidInput(f"{where}variables must be an object of field: value", field="variables")
    for name, raw in variables.items():
        field_doc = fields.get(name)
        if field_doc is None:
            raise NotFound(f"{where}no field called {name!r}; create it first (createField)", field="field")
        result.variables[name] = checked_value(field_doc, raw, where, regional)
        if field_doc.get("external"):
            result.links[name] = field_doc["external"]
    tags = row.get("tags") or []
    if not isinstance(tags, list):
        raise InvalidInput(f"{where}tags must be a list of tag names", field="tags")
    result.tags = tuple([await _tag_name(runtime, workspace_id, t, where) for t in tags])
    opted_in = row.get("optedIn")
    if opted_in is not None and not isinstance(opted_in, bool):
        raise InvalidInput(f"{where}optedIn must be true or false", field="optedIn")
    result.opted_in = opted_in
    return result
