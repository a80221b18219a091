"""Workspace catalog use cases: tags, fields, agents and templates, plus the snapshot validators use.

Flows refer to catalog entries by *name* (tag names, field names, agent e-mails, template
names), so names are normalised once here and entries a flow still uses cannot disappear.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.actors.contact_actor import event_id
from server.actors.events import TagContact
from server.errors import Conflict, InvalidInput, NotFound
from server.ids import ContactKey, new_id
from server.machines.catalog import Catalog, TemplateSummary, summarize_template
from server.machines.flow_walk import definition_segments, raw_nodes, segment_names
from server.machines.values import FIELD_TYPES, fold
from server.operations.flow_versions import flows_using
from server.services import Services
from server.text_input import (
    MAX_AGENT_NAME,
    MAX_EMAIL,
    MAX_FIELD_NAME,
    MAX_OPTION,
    MAX_TAG_NAME,
    checked_name,
    checked_text,
)

TAG_KINDS = ("MARKETING", "SUPPORT")
RETAG_CONCURRENCY = 16
MAX_OPTIONS = 100
RESERVED_FIELDS = frozenset({"phone", "name"})  # built into every contact ({{contact.phone}})
EXTERNAL_SYSTEMS = ("klaviyo",)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
TEMPLATE_STATUSES = ("DRAFT", "PENDING", "APPROVED", "REJECTED", "PAUSED", "DISABLED", "FLAGGED")
# FLAGGED (quality warning) templates can still be sent; PAUSED/DISABLED/unapproved ones cannot.
SENDABLE_TEMPLATE_STATUSES = ("APPROVED", "FLAGGED")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")  # Meta: lower-case letters, digits, underscores
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")  # Meta locale codes: es, en_US, pt_BR
# Meta's limits (WhatsApp Cloud API, message templates).
MAX_BUTTONS = 10
MAX_BUTTONS_BY_TYPE = {"URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1}
MAX_BODY = 1024
MAX_HEADER_TEXT = 60
MAX_FOOTER = 60
MAX_BUTTON_TEXT = 25


# --- tags ---------------------------------------------------------------------------------------


def normalize_tag_name(name: object, field: str = "name") -> str:
    return checked_name(name, field=field, limit=MAX_TAG_NAME, what="a tag name")


def _tag_kind(kind: object) -> str:
    value = str(getattr(kind, "value", kind)).upper()
    if value not in TAG_KINDS:
        raise InvalidInput(f"tag kind must be one of {', '.join(TAG_KINDS)}", field="kind")
    return value


async def create_tag(services: Services, workspace_id: str, name: str, kind: object) -> dict[str, Any]:
    name = normalize_tag_name(name)
    document = {
        "_id": new_id("tag"),
        "workspace_id": workspace_id,
        "name": name,
        "kind": _tag_kind(kind),
        "created_at": services.clock.now(),
    }
    if not await services.tags.insert(document):
        raise Conflict(f"a tag called {name!r} already exists", field="name")
    return document


async def require_tag(services: Services, workspace_id: str, tag_id: str) -> dict[str, Any]:
    tag = await services.tags.get(workspace_id, tag_id)
    if tag is None:
        raise NotFound(f"tag {tag_id} not found")
    return tag


async def list_tags(services: Services, workspace_id: str) -> list[dict[str, Any]]:
    return await services.tags.list(workspace_id)


async def rename_tag(services: Services, workspace_id: str, tag_id: str, name: str) -> dict[str, Any]:
    """Rename a tag no flow uses yet.

    Flows and contacts hold tag *names*, so renaming a tag a flow uses would silently break
    that flow's tag nodes and segments: the caller is told which flows to edit first.
    """
    tag = await require_tag(services, workspace_id, tag_id)
    name = normalize_tag_name(name)
    if name == tag["name"]:
        return tag
    await _refuse_if_used(services, workspace_id, tag["name"], "rename")
    try:
        updated = await services.tags.update(workspace_id, tag_id, {"name": name})
    except DuplicateKeyError:
        raise Conflict(f"a tag called {name!r} already exists", field="name") from None
    if updated is None:
        raise NotFound(f"tag {tag_id} not found")
    await retag_contacts(services, workspace_id, tag["name"], name)  # contacts keep their tag
    return updated


async def delete_tag(services: Services, workspace_id: str, tag_id: str) -> bool:
    """Delete a tag no flow uses, and take it off every contact.

    The rule: refused with CONFLICT, naming the flows, while the draft or the active version of
    any flow adds, removes or tests the tag (edit those flows first). Runs still finishing on
    an older version may add the name again; it then acts like a tag outside the catalog.
    """
    tag = await require_tag(services, workspace_id, tag_id)
    await _refuse_if_used(services, workspace_id, tag["name"], "delete")
    deleted = await services.tags.delete(workspace_id, tag_id)
    if deleted:
        await retag_contacts(services, workspace_id, tag["name"], None)
    return deleted


async def retag_contacts(services: Services, workspace_id: str, old: str, new: str | None) -> int:
    """Rename (or, with ``new`` None, remove) a tag on every contact that has it.

    Through each contact's actor, not a bulk update: an actor holding the contact in memory
    must see the change, and subscribers get it like any other.
    """
    actors = services.actors
    gate = asyncio.Semaphore(RETAG_CONCURRENCY)
    add = (new,) if new else ()

    async def retag(key: ContactKey) -> None:
        async with gate:
            await actors.ask(key, TagContact(event_id(), add=add, remove=(old,)))

    keys = await services.contacts.keys_with_tag(workspace_id, old)
    await asyncio.gather(*(retag(k) for k in keys))
    return len(keys)


async def flows_using_tag(services: Services, workspace_id: str, name: str) -> list[str]:
    """Names of the flows whose draft or active version adds, removes or tests tag ``name``."""
    return await flows_using(
        services, workspace_id, lambda definition: name in tags_in_definition(definition)
    )


async def _refuse_if_used(services: Services, workspace_id: str, name: str, action: str) -> None:
    using = await flows_using_tag(services, workspace_id, name)
    if using:
        listed = ", ".join(repr(n) for n in using)
        raise Conflict(
            f"cannot {action} tag {name!r}: used by flow(s) {listed}; remove it from them first",
            flows=using,
        )


def tags_in_definition(definition: Any) -> set[str]:
    """Tag names a raw flow document mentions (``tag`` nodes and ``{"tag": ..}`` segment leaves)."""
    found: set[str] = set()
    for node in raw_nodes(definition, "tag"):
        for key in ("add", "remove"):
            found.update(v for v in node.get(key) or [] if isinstance(v, str))
    for segment in definition_segments(definition):
        found.update(name for kind, name in segment_names(segment) if kind == "tag")
    return found


# --- fields -------------------------------------------------------------------------------------


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
    services: Services,
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


async def list_fields(services: Services, workspace_id: str) -> list[dict[str, Any]]:
    return await services.fields.list(workspace_id)


async def get_field(services: Services, workspace_id: str, name: str) -> dict[str, Any]:
    found = await services.fields.get_by_name(workspace_id, name)
    if found is None:
        raise NotFound(f"no field called {name!r}; create it first (createField)", field="name")
    return found


# --- agents -------------------------------------------------------------------------------------


def normalize_email(email: object) -> str:
    value = checked_name(email, field="email", limit=MAX_EMAIL, what="an e-mail address").lower()
    if not _EMAIL.fullmatch(value):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return value


def agent_name(name: object) -> str:
    return checked_name(name, field="name", limit=MAX_AGENT_NAME, what="an agent name")


def _teams(teams: list[str] | None) -> list[str]:
    cleaned = [" ".join(t.split()) for t in teams or [] if isinstance(t, str) and t.strip()]
    return sorted(set(cleaned))


async def create_agent(
    services: Services, workspace_id: str, email: str, name: str, teams: list[str] | None = None
) -> dict[str, Any]:
    email = normalize_email(email)
    document: dict[str, Any] = {
        "_id": new_id("agt"),
        "workspace_id": workspace_id,
        "email": email,
        "name": agent_name(name),
        "available": True,
        "teams": _teams(teams),
        "created_at": services.clock.now(),
    }
    if not await services.agents.insert(document):
        raise Conflict(f"an agent with e-mail {email} already exists", field="email")
    await services.teams.ensure(workspace_id, document["teams"], document["created_at"])
    return document


async def set_agent(
    services: Services, workspace_id: str, email: str, name: str, teams: list[str] | None = None
) -> dict[str, Any]:
    """Create the agent or update its name (and teams, when given): idempotent, for seeding."""
    email = normalize_email(email)
    existing = await services.agents.get_by_email(workspace_id, email)
    if existing is None:
        try:
            return await create_agent(services, workspace_id, email, name, teams)
        except Conflict:  # created concurrently: fall through to the update
            existing = await services.agents.get_by_email(workspace_id, email)
            assert existing is not None
    changes: dict[str, Any] = {"name": agent_name(name)}
    if teams is not None:
        changes["teams"] = _teams(teams)
        await services.teams.ensure(workspace_id, changes["teams"], services.clock.now())
    updated = await services.agents.update(workspace_id, existing["_id"], changes)
    assert updated is not None
    return updated


async def list_agents(services: Services, workspace_id: str) -> list[dict[str, Any]]:
    return await services.agents.list(workspace_id)


async def find_agent(services: Services, workspace_id: str, id_or_email: str) -> dict[str, Any]:
    found = await services.agents.find(workspace_id, id_or_email.strip())
    if found is None:
        raise NotFound(f"agent {id_or_email} not found")
    return found


async def set_agent_availability(
    services: Services, workspace_id: str, agent_id: str, available: bool
) -> dict[str, Any]:
    agent = await find_agent(services, workspace_id, agent_id)
    updated = await services.agents.update(workspace_id, agent["_id"], {"available": bool(available)})
    if updated is None:
        raise NotFound(f"agent {agent_id} not found")
    return updated


# --- templates ----------------------------------------------------------------------------------


def _upper(value: object) -> str:
    return str(getattr(value, "value", value) or "").strip().upper()


def _text(component: dict[str, Any], where: str, limit: int, required: bool = True) -> None:
    text = component.get("text")
    if text is None and not required:
        return
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{where} needs its text", field="components")
    checked_text(text, field="components", limit=limit, what=f"{where} text")


def _button(button: Any, index: int) -> dict[str, Any]:
    where = f"button {index + 1}"
    if not isinstance(button, dict):
        raise InvalidInput(f"{where} must be an object with a type", field="components")
    kind = _upper(button.get("type"))
    if kind not in BUTTON_TYPES:
        raise InvalidInput(f"{where}: type must be one of {', '.join(BUTTON_TYPES)}", field="components")
    normalized = {**button, "type": kind}
    if kind != "COPY_CODE":  # WhatsApp labels copy-code buttons itself
        _text(button, where, MAX_BUTTON_TEXT)
    if kind == "URL" and not (isinstance(button.get("url"), str) and button["url"].startswith("http")):
        raise InvalidInput(f"{where}: a URL button needs an http(s) url", field="components")
    if kind == "PHONE_NUMBER" and not (
        isinstance(button.get("phone_number"), str) and button["phone_number"].strip()
    ):
        raise InvalidInput(f"{where}: a PHONE_NUMBER button needs phone_number", field="components")
    return normalized


def validate_components(components: Any) -> list[dict[str, Any]]:
    """Check Meta's component format (HEADER, BODY, FOOTER, BUTTONS) and WhatsApp's limits.

    Done here rather than waiting for Meta's review so the author gets the reason at once.
    """
    if not isinstance(components, list) or not components:
        raise InvalidInput("components must be a list with at least a BODY", field="components")
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    for component in components:
        if not isinstance(component, dict):
            raise InvalidInput("each component must be an object with a type", field="components")
        kind = _upper(component.get("type"))
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise InvalidInput(
                f"unknown component type {component.get('type')!r}; use HEADER, BODY, FOOTER or BUTTONS",
                field="components",
            )
        if kind in seen:
            raise InvalidInput(f"a template has at most one {kind}", field="components")
        seen.add(kind)
        normalized = {**component, "type": kind}
        if kind == "HEADER":
            header_format = _upper(component.get("format") or "TEXT")
            if header_format not in HEADER_FORMATS:
                raise InvalidInput(
                    f"header format must be one of {', '.join(HEADER_FORMATS)}", field="components"
                )
            normalized["format"] = header_format
            if header_format == "TEXT":
                _text(component, "the header", MAX_HEADER_TEXT)
        elif kind == "BODY":
            _text(component, "the body", MAX_BODY)
        elif kind == "FOOTER":
            _text(component, "the footer", MAX_FOOTER)
        else:
            buttons = component.get("buttons")
            if not isinstance(buttons, list) or not buttons:
                raise InvalidInput("BUTTONS needs a list of buttons", field="components")
            if len(buttons) > MAX_BUTTONS:
                raise InvalidInput(f"a template has at most {MAX_BUTTONS} buttons", field="components")
            normalized["buttons"] = [_button(b, i) for i, b in enumerate(buttons)]
            for kind_limited, limit in MAX_BUTTONS_BY_TYPE.items():
                count = sum(1 for b in normalized["buttons"] if b["type"] == kind_limited)
                if count > limit:
                    raise InvalidInput(
                        f"a template has at most {limit} {kind_limited} button(s)", field="components"
                    )
        result.append(normalized)
    if "BODY" not in seen:
        raise InvalidInput("a template needs a BODY component", field="components")
    return result


def template_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A template's name, language, category and components, checked as Meta would check them."""
    name = str(data.get("name") or "").strip()
    if not _TEMPLATE_NAME.fullmatch(name):
        raise InvalidInput(
            f"template name {name!r} must be lower-case letters, digits and underscores "
            "(Meta's rule), e.g. cart_reminder",
            field="name",
        )
    language = str(data.get("language") or "").strip()
    if not _LANGUAGE.fullmatch(language):
        raise InvalidInput(
            f"language {language!r} must be a WhatsApp locale such as es, en_US or pt_BR", field="language"
        )
    category = _upper(data.get("category"))
    if category not in TEMPLATE_CATEGORIES:
        raise InvalidInput(f"category must be one of {', '.join(TEMPLATE_CATEGORIES)}", field="category")
    return {
        "name": name,
        "language": language,
        "category": category,
        "components": validate_components(data.get("components")),
    }


async def create_template(services: Services, workspace_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Store a template as DRAFT; publishing a flow that uses it submits it to Meta."""
    fields = template_fields(data)
    now = services.clock.now()
    document = {
        "_id": new_id("tpl"),
        "workspace_id": workspace_id,
        **fields,
        "status": "DRAFT",
        "rejection_reason": None,
        "created_at": now,
        "updated_at": now,
    }
    if not await services.templates.insert(document):
        name, language = fields["name"], fields["language"]
        raise Conflict(
            f"template {name!r} already exists in language {language}; edit it with updateTemplate",
            field="name",
        )
    services.caches.forget_extras(workspace_id)  # runs check a template's category (consent)
    return document


async def list_templates(services: Services, workspace_id: str) -> list[dict[str, Any]]:
    return await services.templates.list(workspace_id)


# --- snapshot for the flow validator ------------------------------------------------------------


async def catalog_snapshot(services: Services, workspace_id: str, flow_id: str | None = None) -> Catalog:
    """What the workspace has; with ``flow_id``, also whether a webhook trigger starts that flow."""
    tags = await services.tags.list(workspace_id)
    fields = await services.fields.list(workspace_id)
    agents = await services.agents.list(workspace_id)
    templates: dict[str, list[TemplateSummary]] = {}
    for document in await services.templates.list(workspace_id):
        templates.setdefault(document["name"], []).append(summarize_template(document))
    flows = await services.flows.list(workspace_id)
    return Catalog(
        tags={t["name"]: t["kind"] for t in tags},
        fields={f["name"]: (f["type"], tuple(f.get("options") or ())) for f in fields},
        agents=frozenset([a["_id"] for a in agents] + [a["email"] for a in agents]),
        templates=templates,
        flows=frozenset(f["name"] for f in flows),
        teams=frozenset(
            [t for a in agents for t in a.get("teams") or []]
            + [t["name"] for t in await services.teams.list(workspace_id)]
        ),
        starts_from_webhook=flow_id is not None
        and await services.webhooks.exists_for_flow(workspace_id, flow_id),
        sandbox=await services.channels.for_workspace(workspace_id) is None,
        connects=await instant_connections_of(services, flows),
        now=services.clock.now(),
        timezone=await services.caches.timezone_of(workspace_id),
    )


async def instant_connections_of(
    services: Services, flows: list[dict[str, Any]]
) -> dict[str, frozenset[str]]:
    """Which flows each flow connects to before any wait, in its draft or in its active version.

    Both count: the active version is what runs now, the draft what will run once published.
    Archived flows start nothing; a document that does not parse connects to nothing. Each
    document is parsed once per process (``services.flow_connections``).
    """
    memo = services.flow_connections
    live = [f for f in flows if f.get("status") != "archived"]
    active = [(f["_id"], f["active_version"]) for f in live if f.get("active_version")]
    versions = await services.flows.get_versions([key for key in active if not memo.known(("version", *key))])
    found: dict[str, frozenset[str]] = {}
    for flow in live:
        targets = memo.targets(("draft", flow["_id"], flow.get("updated_at")), flow.get("draft"))
        key: tuple[str, int] = (flow["_id"], flow.get("active_version") or 0)
        if key[1]:
            stored = versions.get(key)
            targets |= memo.targets(("version", *key), stored.get("definition") if stored else None)
        found[flow["name"]] = targets
    return found
