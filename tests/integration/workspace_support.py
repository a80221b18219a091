"""The operator API from tests, and counting what of a workspace is left in the store and Redis.

Counting is deliberately blind to how the server stores things: every document of every
collection is searched for the workspace's id anywhere in it (a field, an ``_id`` prefix, a nested
value), and every Redis key for the ids of the workspace's documents in its name or its content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx
from redis.asyncio import Redis

from server.runtime import Runtime
from server.web.app import create_app
from tests.support.graphql import GraphQLClient

OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef"
# The deployment a Redis key belongs to: its prefix ``konvo:<database>:`` (server/redis_keys.py).
_DEPLOYMENT = re.compile(rb"konvo:[^:{}]+:")

CREATE = """mutation($i: CreateWorkspaceInput!) { createWorkspace(input: $i) {
  adminKey workspace { id name status timezone locale defaultCountry } } }"""
DISABLE = "mutation($id: ID!) { disableWorkspace(id: $id) { id status disabledAt } }"
ENABLE = "mutation($id: ID!) { enableWorkspace(id: $id) { id status disabledAt } }"
DELETE = """mutation($id: ID!) { deleteWorkspace(id: $id) {
  workspaceId documents redisKeys queuedJobs collections { collection count }
  finished undrainedReplicas } }"""


class OperatorClient(GraphQLClient):
    """``GraphQLClient`` posting to ``/operator/graphql``."""

    async def raw(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        response = await self.http.post(
            "/operator/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()


def asgi_http(runtime: Runtime) -> httpx.AsyncClient:
    app = create_app(runtime.settings, runtime=runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://konvo.test")


async def create_workspace(operator: GraphQLClient, **fields: Any) -> tuple[str, str]:
    """A workspace made through the operator API: (its id, its first ADMIN key)."""
    spec = {"name": "Tienda", "timezone": "Europe/Madrid", **fields}
    created = (await operator(CREATE, i=spec))["createWorkspace"]
    return created["workspace"]["id"], created["adminKey"]


def _mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, dict):
        return any(_mentions(k, needle) or _mentions(v, needle) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions(v, needle) for v in value)
    return False


async def store_mentions(runtime: Runtime, workspace_id: str) -> dict[str, int]:
    """Documents, per collection, that mention the workspace's id anywhere."""
    found: dict[str, int] = {}
    for name in await runtime.database.db.list_collection_names():
        async for document in runtime.database.collection(name).find({}):
            if _mentions(document, workspace_id):
                found[name] = found.get(name, 0) + 1
    return found


async def workspace_ids(runtime: Runtime, workspace_id: str) -> set[str]:
    """The ids the workspace's data goes by: its own, its documents', its API keys', its timers' and
    its phone numbers' (what a Redis key of it would be named by or hold)."""
    needles = {workspace_id}
    for name in await runtime.database.db.list_collection_names():
        async for document in runtime.database.collection(name).find({"workspace_id": workspace_id}):
            needles.add(str(document["_id"]))
            for field in ("key_id", "phone_number_id", "broadcast_id", "trigger_id", "flow_id"):
                if isinstance(document.get(field), str):
                    needles.add(document[field])
            for timer in document.get("timers") or []:
                needles.add(timer["id"])
            for entry in document.get("external_sync") or []:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    needles.add(entry["id"])
    return needles


async def redis_mentions(runtime: Runtime, needles: Iterable[str]) -> list[str]:
    """Redis keys of this runtime's deployment whose name, or any member, field or value, holds one
    of ``needles``.

    The tests of a worker share one Redis, each under its own deployment prefix; keys another test
    left (a pair-rate schedule lives on for minutes) can hold the same phone number id, because
    every Graph API fake serves the same one, so keys naming another deployment are not ours."""
    wanted = [n.encode() for n in needles]
    ours = runtime.prefix.encode()
    found = []
    async for key in runtime.redis.scan_iter(count=1000):
        deployment = _DEPLOYMENT.search(key)
        if deployment is not None and deployment.group(0) != ours:
            continue
        parts = [key, *await _contents(runtime.redis, key)]
        if any(n in part for part in parts for n in wanted):
            found.append(key.decode(errors="replace"))
    return found


async def _contents(redis: Redis, key: bytes) -> list[bytes]:
    kind = (await redis.type(key)).decode()
    if kind == "string":
        value = await redis.get(key)
        return [value] if value is not None else []
    if kind == "hash":
        return [b for pair in (await redis.hgetall(key)).items() for b in pair]
    if kind == "zset":
        return [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
    if kind == "set":
        return list(await redis.smembers(key))
    if kind == "list":
        return list(await redis.lrange(key, 0, -1))
    if kind == "stream":
        entries = await redis.xrange(key)
        return [b for _, fields in entries for pair in fields.items() for b in pair]
    return []
