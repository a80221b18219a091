"""Meta's published OpenAPI description of the Graph API, turned into JSON Schema validators.

The Graph API fake (``graph_api_fake.py``) checks every request against these, so the product is
tested against Meta's own description rather than against our assumptions. Two things need care:

* OpenAPI ``discriminator`` is not JSON Schema: it is rewritten as ``if type == k then <mapped>``
  so a bad ``text`` message reports the text schema's error, not "matches none of 11 oneOf".
* Meta writes messages as ``allOf: [BaseMessageProperties, {additionalProperties: false, ...}]``.
  Read literally by JSON Schema that rejects every message (``to`` is "additional" to the second
  part); the evident intent is one closed object, so ``allOf`` parts are merged before checking.

A few plain mistakes in the file are corrected in ``ERRATA``, each with the reason, and so are the
places where the platform moved on since v23.0 (business-scoped user IDs as ``recipient``,
tests/conformance/whatsapp-bsuid.md); the message types Meta added after v23.0 are described in
``EXTENSIONS``, each with its source.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
# Vendored with its licence and source commit (tests/conformance/README.md): a fresh clone needs
# nothing beside it.
CONFORMANCE_DIR = ROOT / "tests" / "conformance"
SPEC_PATH = CONFORMANCE_DIR / "meta-cloud-api" / "business-messaging-api_v23.0.yaml"
_REF = "#/components/schemas/"

# (JSON pointer into the spec, new value, why). Applied to a copy; the file itself is never edited.
ERRATA: tuple[tuple[str, Any, str], ...] = (
    (
        "/components/schemas/TemplateComponent/properties/index/pattern",
        "^[0-9]$",
        "'^[2-6, 11-14]$' is a character class that refuses index '0'; the same property's "
        "description says 'Position index of the button (0-9)', as Meta's send-template docs do",
    ),
    (
        "/components/schemas/ButtonComponent/allOf/1/properties/index/pattern",
        "^[0-9]$",
        "same broken pattern as TemplateComponent.index",
    ),
    (
        "/components/schemas/TemplateComponent/properties/sub_type/enum",
        ["quick_reply", "url", "catalog", "copy_code"],
        "Meta's template docs send copy-code buttons as sub_type 'copy_code' (coupon_code parameter)",
    ),
    (
        "/components/schemas/ButtonComponent/allOf/1/properties/sub_type/enum",
        ["quick_reply", "url", "catalog", "copy_code"],
        "as above",
    ),
    (
        "/components/schemas/ButtonParameterObject/properties/type/enum",
        ["payload", "text", "coupon_code"],
        "copy-code buttons take a 'coupon_code' parameter (Meta's copy code template docs)",
    ),
    (
        "/components/schemas/ButtonParameterObject/discriminator/mapping/coupon_code",
        "#/components/schemas/ButtonCouponCodeParameter",
        "as above",
    ),
    (
        "/components/schemas/ButtonCouponCodeParameter",
        {
            "allOf": [
                {"$ref": "#/components/schemas/ButtonParameterObject"},
                {
                    "type": "object",
                    "required": ["coupon_code"],
                    "properties": {
                        "type": {"enum": ["coupon_code"]},
                        "coupon_code": {"type": "string", "maxLength": 15},
                    },
                },
            ]
        },
        "as above (the coupon code is at most 15 characters)",
    ),
    (
        "/components/schemas/BaseMessageProperties/required",
        ["messaging_product", "recipient_type", "type"],
        "since 2026 a message names its recipient by `to` or by `recipient` (a BSUID); the fake "
        "requires one of the two (tests/conformance/whatsapp-bsuid.md, Sending)",
    ),
    (
        "/components/schemas/BaseMessageProperties/properties/recipient",
        {"type": "string", "pattern": "^[A-Z]{2}\\.(ENT\\.)?[A-Za-z0-9]{1,128}$"},
        "a business-scoped user ID or parent BSUID: a country code, a period (and ENT.), up to 128 "
        "alphanumerics (tests/conformance/whatsapp-bsuid.md)",
    ),
)


# --- interactive types Meta documents beyond the v23.0 description (2025-2026) ---------------------
# Source of each: Meta's Cloud API message reference, developers.facebook.com/documentation/
# business-messaging/whatsapp/messages/ ("Interactive CTA URL button messages", "Interactive
# location request messages", "Interactive media carousel messages"), as summarised with its
# limits in tests/conformance/README.md ("WhatsApp 2026"). A ``-`` at the end of a pointer appends.
_MESSAGES_REFERENCE = "developers.facebook.com/documentation/business-messaging/whatsapp/messages/"
_CTA_URL_ACTION = {
    "type": "object",
    "required": ["name", "parameters"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "enum": ["cta_url"]},
        "parameters": {
            "type": "object",
            "required": ["display_text", "url"],
            "additionalProperties": False,
            "properties": {
                "display_text": {"type": "string", "minLength": 1, "maxLength": 20},
                "url": {"type": "string", "pattern": "^https?://"},
            },
        },
    },
}
_CAROUSEL_QUICK_REPLIES = {
    "type": "object",
    "required": ["buttons"],
    "additionalProperties": False,
    "properties": {
        "buttons": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {
                "type": "object",
                "required": ["type", "quick_reply"],
                "additionalProperties": False,
                "properties": {
                    "type": {"type": "string", "enum": ["quick_reply"]},
                    "quick_reply": {
                        "type": "object",
                        "required": ["id", "title"],
                        "additionalProperties": False,
                        "properties": {
                            "id": {"type": "string", "minLength": 1, "maxLength": 256},
                            "title": {"type": "string", "minLength": 1, "maxLength": 20},
                        },
                    },
                },
            },
        }
    },
}
EXTENSIONS: tuple[tuple[str, Any, str], ...] = (
    (
        "/components/schemas/InteractiveObject/properties/type/enum",
        [
            "button",
            "call_permission_request",
            "catalog_message",
            "list",
            "product",
            "product_list",
            "flow",
            "cta_url",
            "location_request_message",
            "carousel",
        ],
        f"{_MESSAGES_REFERENCE}: 'cta_url', 'location_request_message' and 'carousel' (media "
        "carousel) are interactive types the v23.0 description does not list",
    ),
    (
        "/components/schemas/ActionObject/oneOf/-",
        _CTA_URL_ACTION,
        f"{_MESSAGES_REFERENCE} (CTA URL): action {{name: cta_url, parameters: {{display_text "
        "(at most 20 characters), url}}}}",
    ),
    (
        "/components/schemas/ActionObject/oneOf/-",
        {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "enum": ["send_location"]}},
        },
        f"{_MESSAGES_REFERENCE} (location request): action {{name: send_location}}, nothing else",
    ),
    (
        "/components/schemas/ActionObject/oneOf/-",
        {
            "type": "object",
            "required": ["cards"],
            "additionalProperties": False,
            "properties": {
                "cards": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 10,
                    "items": {"$ref": "#/components/schemas/CarouselCard"},
                }
            },
        },
        f"{_MESSAGES_REFERENCE} (media carousel): action {{cards: 2 to 10 cards}}",
    ),
    (
        "/components/schemas/CarouselCard",
        {
            "type": "object",
            "required": ["card_index", "type", "header", "action"],
            "additionalProperties": False,
            "properties": {
                "card_index": {"type": "integer", "minimum": 0, "maximum": 9},
                "type": {"type": "string", "enum": ["cta_url", "button"]},
                "header": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"type": "string", "enum": ["image", "video"]},
                        "image": {"$ref": "#/components/schemas/MediaObject"},
                        "video": {"$ref": "#/components/schemas/MediaObject"},
                    },
                },
                "body": {
                    "type": "object",
                    "required": ["text"],
                    "additionalProperties": False,
                    "properties": {"text": {"type": "string", "maxLength": 160}},
                },
                "action": {"oneOf": [_CTA_URL_ACTION, _CAROUSEL_QUICK_REPLIES]},
            },
        },
        f"{_MESSAGES_REFERENCE} (media carousel): a card is an image or video header, an optional "
        "body of at most 160 characters, and one URL button (type cta_url) or quick replies (type "
        "button; ids up to 256, titles up to 20 characters; two per card in Meta's example, the "
        "most providers document)",
    ),
)


@lru_cache(maxsize=1)
def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The spec as a dict with ERRATA and EXTENSIONS applied (parsed once per process; ~0.5 s)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if not path.is_file():
        raise FileNotFoundError(
            f"Meta's API description is not at {path}: it is vendored in tests/conformance/ "
            "(see its README); the Graph API fake cannot check requests without it"
        )
    with path.open(encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=loader)  # a safe loader
    for pointer, value, _why in (*ERRATA, *EXTENSIONS):
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
        node: Any = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            if last == "-":
                node.append(copy.deepcopy(value))
            else:
                node[int(last)] = copy.deepcopy(value)
        else:
            node[last] = copy.deepcopy(value)
    return spec


class _Normalizer:
    """Inline ``$ref``s, merge ``allOf`` and rewrite discriminators (see module docstring)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = spec["components"]["schemas"]

    def schema(self, schema: Any, stack: tuple[str, ...] = (), bare: frozenset[str] = frozenset()) -> Any:
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            name = schema["$ref"].removeprefix(_REF)
            target = self.schemas[name]
            if name in bare:  # a mapped child referring back to its discriminating parent
                target = {k: v for k, v in target.items() if k != "discriminator"}
            elif name in stack:
                raise ValueError(f"recursive schema {name}; not supported by this normaliser")
            return self.schema(target, (*stack, name), bare)
        if "discriminator" in schema:
            return self._discriminated(schema, stack, bare)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in ("example", "examples", "description", "x-examples"):
                continue
            if key == "properties":
                out[key] = {k: self.schema(v, stack, bare) for k, v in value.items()}
            elif key in ("items", "not", "if", "then", "else", "additionalProperties", "contains"):
                out[key] = self.schema(value, stack, bare)
            elif key in ("oneOf", "anyOf"):
                out[key] = [self.schema(v, stack, bare) for v in value]
            elif key == "allOf":
                parts = [self.schema(v, stack, bare) for v in value]
                out.update(_merge(parts))
            else:
                out[key] = value
        return out

    def _discriminated(self, schema: dict[str, Any], stack: tuple[str, ...], bare: frozenset[str]) -> Any:
        prop = schema["discriminator"]["propertyName"]
        mapping: dict[str, str] = schema["discriminator"].get("mapping") or {}
        parent = stack[-1] if stack else ""
        base = {k: v for k, v in schema.items() if k not in ("discriminator", "oneOf", "anyOf")}
        branches: list[dict[str, Any]] = [
            self.schema(base, stack, bare),
            {"required": [prop], "properties": {prop: {"enum": sorted(mapping)}}},
        ]
        for value, ref in mapping.items():
            branches.append(
                {
                    "if": {"required": [prop], "properties": {prop: {"const": value}}},
                    "then": self.schema({"$ref": ref}, stack, bare | {parent}),
                }
            )
        return {"allOf": branches}


def _merge(parts: list[Any]) -> dict[str, Any]:
    """One object schema from ``allOf`` parts; parts that are not plain objects stay in ``allOf``."""
    merged: dict[str, Any] = {}
    kept: list[Any] = []
    closed = False
    for part in parts:
        if not isinstance(part, dict) or any(k in part for k in ("allOf", "oneOf", "anyOf", "if")):
            kept.append(part)
            continue
        for key, value in part.items():
            if key == "properties":
                props = merged.setdefault("properties", {})
                for name, sub in value.items():
                    props[name] = {"allOf": [props[name], sub]} if name in props else sub
            elif key == "required":
                merged["required"] = sorted(set(merged.get("required", [])) | set(value))
            elif key == "additionalProperties" and value is False:
                closed = True
            else:
                merged.setdefault(key, value)
    if closed:
        merged["additionalProperties"] = False
    if kept:
        merged["allOf"] = kept
    return merged


@dataclass(frozen=True)
class Operation:
    """What one path + method of the spec accepts and answers."""

    path: str
    method: str
    pattern: re.Pattern[str]
    request: Draft202012Validator | None
    responses: dict[str, Draft202012Validator]
    headers: dict[str, dict[str, Any]]
    query: dict[str, dict[str, Any]]


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def _json_schema(content: dict[str, Any] | None) -> Any:
    media = (content or {}).get("application/json") or {}
    return media.get("schema")


@lru_cache(maxsize=8)
def operation(path: str, method: str) -> Operation:
    """Validators for the request body, documented responses and parameters of one operation."""
    spec = load_spec()
    norm = _Normalizer(spec)
    item = spec["paths"][path]
    op = item[method]
    params = [*item.get("parameters", []), *op.get("parameters", [])]
    resolved = [
        spec["components"]["parameters"][p["$ref"].split("/")[-1]] if "$ref" in p else p for p in params
    ]
    body_schema = _json_schema((op.get("requestBody") or {}).get("content"))
    responses = {
        code: Draft202012Validator(norm.schema(schema))
        for code, answer in op.get("responses", {}).items()
        if (schema := _json_schema(answer.get("content"))) is not None
    }
    return Operation(
        path=path,
        method=method,
        pattern=_path_pattern(path),
        request=Draft202012Validator(norm.schema(body_schema)) if body_schema is not None else None,
        responses=responses,
        headers={p["name"].lower(): p for p in resolved if p.get("in") == "header"},
        query={p["name"]: p for p in resolved if p.get("in") == "query"},
    )


def describe(errors: list[Any]) -> str:
    """Validation errors as one line each, naming where in the body they are."""
    lines = []
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        lines.append(f"{where}: {error.message}")
    return "; ".join(lines)


def dump_normalized(path: str, method: str) -> str:
    """Debug aid: the normalised request schema of one operation as JSON."""
    validator = operation(path, method).request
    return json.dumps(validator.schema if validator else None, indent=1)
