"""Create, through the API, the tags, fields, agents and templates a test flow refers to.

Flow editors offer "create tag/field" from the node being edited; tests that are about
something else do the same before publishing, so the validator's catalog checks pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.support.graphql import GraphQLClient


def _segment_leaves(segment: Any) -> Iterator[dict[str, Any]]:
    if isinstance(segment, dict):
        for key in ("all", "any"):
            for child in segment.get(key, []):
                yield from _segment_leaves(child)
        if "not" in segment:
            yield from _segment_leaves(segment["not"])
        yield segment


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    return "TEXT"


def referenced(definition: dict[str, Any]) -> dict[str, Any]:
    tags: set[str] = set()
    fields: dict[str, str] = {}
    agents: set[str] = set()
    templates: dict[tuple[str, str], tuple[int, int]] = {}
    for node in definition.get("nodes", []):
        kind = node.get("type")
        if kind == "tag":
            tags |= set(node.get("add", [])) | set(node.get("remove", []))
        elif kind == "set_variable":
            value = node.get("value")
            fields.setdefault(node["field"], "TEXT" if isinstance(value, dict) else _value_type(value))
            if isinstance(value, dict) and value.get("var"):
                fields.setdefault(value["var"], "TEXT")
        elif kind == "assign" and node.get("agent"):
            agents.add(node["agent"])
        elif kind == "template":
            body = (node.get("params") or {}).get("body") or []
            templates[(node["template"], node.get("language", "es"))] = (
                len(body),
                len(node.get("buttons", [])),
            )
        elif kind == "condition":
            for branch in node.get("branches", []):
                for leaf in _segment_leaves(branch.get("segment")):
                    if "tag" in leaf:
                        tags.add(leaf["tag"])
                    if "var" in leaf:
                        fields.setdefault(leaf["var"], _value_type(leaf.get("value")))
    return {"tags": tags, "fields": fields, "agents": agents, "templates": templates}


async def ensure_catalog(gql: GraphQLClient, definition: dict[str, Any]) -> None:
    wanted = referenced(definition)
    have = await gql("{ tags { name } fields { name } agents { email } templates { name language } }")
    for name in wanted["tags"] - {t["name"] for t in have["tags"]}:
        await gql("mutation($n: String!) { createTag(name: $n, kind: MARKETING) { id } }", n=name)
    for name, kind in wanted["fields"].items():
        if name not in {f["name"] for f in have["fields"]}:
            await gql(f"mutation($n: String!) {{ createField(name: $n, type: {kind}) {{ id }} }}", n=name)
    for email in wanted["agents"] - {a["email"] for a in have["agents"]}:
        await gql("mutation($e: String!) { createAgent(email: $e, name: $e) { id } }", e=email)
    existing = {(t["name"], t["language"]) for t in have["templates"]}
    for (name, language), (params, buttons) in wanted["templates"].items():
        if (name, language) in existing:
            continue
        body = "Hola " + " ".join(f"{{{{{i + 1}}}}}" for i in range(params))
        components: list[dict[str, Any]] = [{"type": "BODY", "text": body}]
        if buttons:
            components.append(
                {
                    "type": "BUTTONS",
                    "buttons": [{"type": "QUICK_REPLY", "text": f"Opción {i + 1}"} for i in range(buttons)],
                }
            )
        await gql(
            "mutation($i: TemplateInput!) { createTemplate(input: $i) { id } }",
            i={"name": name, "language": language, "category": "UTILITY", "components": components},
        )
