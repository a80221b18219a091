"""Typed contact fields (TEXT, NUMBER, BOOLEAN, DATE, FIXED with its options), optionally linked to an
external profile property (Klaviyo); flows save values into them by name.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from server.clock import Clock
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import new_id
from server.machines.values import FIELD_TYPES, fold
from server.store.catalog import FieldRepository
from server.text_input import (
    MAX_FIELD_NAME,
    MAX_OPTION,
    checked_name,
)
from server.workspace_caches import WorkspaceCaches

MAX_OPTIONS = 100
RESERVED_FIELDS = frozenset({"phone", "name"})  # built into every contact ({{contact.phone}})
EXTERNAL_SYSTEMS = ("klaviyo",)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FieldServices(Protocol):
    """What the field use cases read: fields, the caches they invalidate, the clock."""

    @property
    def caches(self) -> WorkspaceCaches: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def fields(self) -> FieldRepository: ...


def normalize_field_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a field needs a name", field="name")
    value = name.strip()
    if not _FIELD_NAME.fullmatch(value) or len(value) > MAX_FIELD_NAME:
        raise InvalidInput(
            f"field name {value!r} must be letters, digits and underscores (not starting with a digit, "
            f"at most {MAX_FIELD_NAME}), e.g. first_name; it is used as {{{{contact.<name>}}}}",
            field="name",
        )
    if value.lower() in RESERVED_FIELDS:
        raise InvalidInput(f"{value!r} is built into every contact; choose another field name", field="name")
    return value


def _field_type(field_type: object) -> str:
    value = str(getattr(field_type, "value", field_type)).upper()
    if value not in FIELD_TYPES:
        raise InvalidInput(f"field type must be one of {', '.join(FIELD_TYPES)}", field="type")
    return value


def _options(field_type: str, options: list[str] | None) -> list[str]:
    given = list(options or [])
    if field_type != "FIXED":
        if given:
            raise InvalidInput(f"only FIXED fields take options, not {field_type}", field="options")
        return []
    if not given:
        raise InvalidInput("a FIXED field needs at least one option", field="options")
    if len(given) > MAX_OPTIONS:
        raise InvalidInput(f"a FIXED field takes at most {MAX_OPTIONS} options", field="options")
    cleaned: list[str] = []
    seen: set[str] = set()
    for option in given:
        value = checked_name(option, field="options", limit=MAX_OPTION, what="a FIXED option")
        key = fold(value)
        if key in seen:  # replies match options ignoring case and accents, so these would clash
            raise InvalidInput(
                f"option {value!r} is given twice (case and accents are ignored)", field="options"
            )
        seen.add(key)
        cleaned.append(value)
    return cleaned


def _external(external: Any) -> dict[str, str] | None:
    """``{"provider" (or "system"): "klaviyo", "property": "city"}``, stored as ``system``."""
    if external is None:
        return None
    if not isinstance(external, dict):
        raise InvalidInput("external must be {provider, property}", field="external")
    system = str(external.get("provider") or external.get("system") or "").strip().lower()
    prop = external.get("property")
    if system not in EXTERNAL_SYSTEMS:
        raise InvalidInput(f"external system must be one of {', '.join(EXTERNAL_SYSTEMS)}", field="external")
    if not isinstance(prop, str) or not prop.strip():
        raise InvalidInput("external needs the profile property to update", field="external")
    return {"system": system, "property": prop.strip()}


async def create_field(
    services: FieldServices,
    workspace_id: str,
    name: str,
    field_type: object,
    options: list[str] | None = None,
    external: dict[str, Any] | None = None,
) -> dict[str, Any]:
    name = normalize_field_name(name)
    kind = _field_type(field_type)
    document = {
        "_id": new_id("fld"),
        "workspace_id": workspace_id,
        "name": name,
        "type": kind,
        "options": _options(kind, options),
        "external": _external(external),
        "created_at": services.clock.now(),
    }
    if not await services.fields.insert(document):
        raise Conflict(f"a field called {name!r} already exists", field="name")
    services.caches.forget_fields(workspace_id)
    services.caches.forget_extras(workspace_id)
    return document


async def list_fields(services: FieldServices, workspace_id: str) -> list[dict[str, Any]]:
    return await services.fields.list(workspace_id)


async def get_field(services: FieldServices, workspace_id: str, name: str) -> dict[str, Any]:
    found = await services.fields.get_by_name(workspace_id, name)
    if found is None:
        raise NotFound(f"no field called {name!r}; create it first (createField)", field="name")
    return found
