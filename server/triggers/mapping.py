"""A webhook trigger's mapping: which parts of the posted JSON become the phone and the variables.

Paths are dotted with list indexes as numbers (``customer.phone``, ``line_items.0.title``). The
mapping is checked when the trigger is created, so a request can only fail on its payload,
and that failure names the path that was missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from server.errors import InvalidInput
from server.phones import country_code, parse_phone

_PATH_PART = re.compile(r"^[^.\s]+$")
_NAME = re.compile(r"^[A-Za-z_][\w\-]*$")
SIGNATURES = ("konvo", "konvo_legacy", "shopify", "token")  # server/triggers/signatures.py


class PayloadError(Exception):
    """The posted JSON does not have what the mapping needs; ``path`` names what is missing."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _check_path(path: str) -> str:
    parts = path.split(".")
    if not path or not all(_PATH_PART.match(p) for p in parts):
        raise ValueError(f"{path!r} is not a dotted path like 'customer.phone' or 'line_items.0.title'")
    return path


class VariableSpec(BaseModel):
    """A variable read from ``path``; with a ``default`` it is optional."""

    model_config = ConfigDict(extra="forbid")
    path: str
    default: Any = None
    optional: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)


class ContactMapping(BaseModel):
    """Contact fields read from the payload and tags to add, written in the turn that starts the run.

    Field names and tags are checked against the workspace's catalog when the trigger is created
    (``server/operations/contact_data.py``); values are typed like ``setVariable`` on each request.
    """

    model_config = ConfigDict(extra="forbid")
    fields: dict[str, str | VariableSpec] = {}
    tags: list[str] = []

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str | VariableSpec]) -> dict[str, str | VariableSpec]:
        for spec in value.values():
            if isinstance(spec, str):
                _check_path(spec)
        return value


class WebhookMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str
    default_country: str | None = None
    variables: dict[str, str | VariableSpec] = {}
    contact: ContactMapping | None = None
    idempotency_key: str | None = None
    signature: Literal["konvo", "konvo_legacy", "shopify", "token"] = "konvo"

    @field_validator("phone", "idempotency_key")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @field_validator("default_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return country_code(value, "default_country")
        except InvalidInput:
            raise ValueError(f"{value!r} is not an ISO 3166 country code like 'ES' or 'MX'") from None

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str | VariableSpec]) -> dict[str, str | VariableSpec]:
        for name, spec in value.items():
            if not _NAME.match(name):
                raise ValueError(f"variable name {name!r} must be letters, digits, '_' or '-'")
            if isinstance(spec, str):
                _check_path(spec)
        return value


def parse_mapping(raw: Any) -> WebhookMapping:
    """Validate a mapping document, raising ``InvalidInput`` that names the offending key."""
    if not isinstance(raw, dict):
        raise InvalidInput("mapping must be a JSON object like {'phone': 'customer.phone'}", field="mapping")
    try:
        return WebhookMapping.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("mapping", *first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}", field=where) from None


_MISSING = object()


def lookup(payload: Any, path: str) -> Any:
    """The value at ``path``; raises ``PayloadError`` naming the first part that is missing."""
    current = payload
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        found: Any = _MISSING
        if isinstance(current, dict):
            found = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            found = current[int(part)]
        if found is _MISSING or found is None:
            at = ".".join(walked)
            detail = "" if at == path else f" (nothing at {at!r})"
            raise PayloadError(path, f"the payload has no value at {path!r}{detail}")
        current = found
    return current


def to_e164(raw: Any, country: str | None, path: str) -> str:
    """A phone from a payload in E.164, through the one parser (``server/phones.py``).

    ``+``/``00`` numbers are international; other digits are read as a national number of
    ``country`` first and, failing that, as international digits without the ``+`` (how
    WhatsApp and many shops spell them, e.g. ``34600111222``).
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise PayloadError(path, f"{path!r} must be a phone number, got {type(raw).__name__}")
    try:
        return parse_phone(raw, field=path, region=country, bare_international=True)
    except InvalidInput as exc:
        hint = "" if country else "; set default_country in the mapping or the workspace for national numbers"
        raise PayloadError(path, f"{exc.message}{hint}") from None


@dataclass(frozen=True)
class Extracted:
    phone: str
    variables: dict[str, Any]
    idempotency_key: str | None
    contact_fields: dict[str, Any] = field(default_factory=dict)  # as posted; typed by the caller
    contact_paths: dict[str, str] = field(default_factory=dict)  # field -> the path it came from


def extract(mapping: WebhookMapping, payload: Any, workspace_country: str | None) -> Extracted:
    """Apply ``mapping`` to ``payload`` (raises ``PayloadError`` naming the missing path)."""
    country = mapping.default_country or workspace_country
    phone = to_e164(lookup(payload, mapping.phone), country, mapping.phone)
    variables = _values(payload, mapping.variables)
    contact_specs = mapping.contact.fields if mapping.contact is not None else {}
    contact_fields = {  # an optional field missing from the payload is left as it is
        name: value for name, value in _values(payload, contact_specs).items() if value is not None
    }
    paths = {name: spec if isinstance(spec, str) else spec.path for name, spec in contact_specs.items()}
    key = None
    if mapping.idempotency_key is not None:
        value = lookup(payload, mapping.idempotency_key)
        if isinstance(value, dict | list):
            raise PayloadError(
                mapping.idempotency_key, f"{mapping.idempotency_key!r} must be a text or number"
            )
        key = str(value)
    return Extracted(
        phone=phone,
        variables=variables,
        idempotency_key=key,
        contact_fields=contact_fields,
        contact_paths=paths,
    )


def _values(payload: Any, specs: dict[str, str | VariableSpec]) -> dict[str, Any]:
    """Each spec's value in ``payload``; an optional one missing gets its default (or None)."""
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if isinstance(spec, str):
            values[name] = lookup(payload, spec)
            continue
        try:
            values[name] = lookup(payload, spec.path)
        except PayloadError:
            if spec.default is None and not spec.optional:
                raise
            values[name] = spec.default
    return values
