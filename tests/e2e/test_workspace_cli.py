"""``konvo workspace`` against a real server process: a workspace it creates serves a flow end to end
with its own key, disabling refuses that key and its webhooks, enabling restores them, and
deleting leaves no document and no Redis key of it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from pymongo import MongoClient

from tests.conftest import ServiceURLs
from tests.e2e.conftest import ServedProcess
from tests.e2e.servers import KONVO, replicas

pytestmark = pytest.mark.e2e

OPERATOR_KEY = "e2e-operator-key-0123456789abcdefghij"
FLOW = {
    "name": "Ayuda",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Te ayudamos?",
            "buttons": [{"id": "yes", "title": "Sí", "next": None}],
            "no_reply": {"after": "1h", "next": None},
        }
    ],
}


@pytest.fixture(scope="module")
def database() -> str:
    return f"e2e_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def server(
    services: ServiceURLs, tmp_path_factory: pytest.TempPathFactory, database: str
) -> Iterator[ServedProcess]:
    extra = {"KONVO_OPERATOR_KEY": OPERATOR_KEY, "KONVO_MONGODB_DB": database}
    with replicas(services, tmp_path_factory.mktemp("operator"), **extra) as (served,):
        yield served


def konvo(
    server: ServedProcess, *args: str, key: str = OPERATOR_KEY, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONVO_")}
    env["KONVO_OPERATOR_KEY"] = key
    return subprocess.run(
        [KONVO, "workspace", *args, "--url", server.base_url],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def graphql(server: ServedProcess, key: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return response.json()


def data(server: ServedProcess, key: str, query: str, **variables: Any) -> dict[str, Any]:
    body = graphql(server, key, query, **variables)
    assert not body.get("errors"), body
    return body["data"]


def wait_for(probe: Any, accept: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    value = probe()
    while not accept(value):
        assert time.monotonic() < deadline, f"not reached; last value {value!r}"
        time.sleep(0.1)
        value = probe()
    return value


def test_the_workspace_command_drives_a_workspace_through_its_life(
    server: ServedProcess, services: ServiceURLs, database: str
) -> None:
    created = konvo(
        server, "create", "Zapatería Luna", "--timezone", "America/Mexico_City", "--country", "MX"
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    assert lines[0].startswith("created  ws_") and "ACTIVE" in lines[0] and "es-MX" in lines[0]
    workspace_id, key = lines[0].split()[1], lines[-1]
    assert key.startswith("konvo_")

    # Its own key serves a flow end to end on the sandbox: inbound, flow, outbox.
    flow_id = data(server, key, "mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=FLOW)[
        "importFlow"
    ]["id"]
    data(server, key, "mutation($id: ID!) { publishFlow(id: $id) { status } }", id=flow_id)
    data(
        server,
        key,
        'mutation($f: ID!) { createInboundTrigger(input: {flowId: $f, kind: KEYWORD, keywords: ["hola"]}) { id } }',
        f=flow_id,
    )
    hook = data(
        server,
        key,
        'mutation($f: ID!) { createWebhookTrigger(flowId: $f, mapping: {phone: "phone"}) { id } }',
        f=flow_id,
    )["createWebhookTrigger"]
    data(server, key, 'mutation { sandboxInbound(phone: "55 1234 5678", text: "hola") }')
    outbox = wait_for(
        lambda: data(server, key, '{ sandboxOutbox(phone: "+525512345678") { text } }')["sandboxOutbox"],
        lambda found: len(found) == 1,
    )
    assert outbox == [{"text": "¿Te ayudamos?"}]

    listed = konvo(server, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"id": workspace_id, "status": "ACTIVE"} in [
        {"id": w["id"], "status": w["status"]} for w in json.loads(listed.stdout)
    ]

    disabled = konvo(server, "disable", workspace_id)
    assert disabled.returncode == 0 and disabled.stdout.startswith(f"disabled {workspace_id}  DISABLED")
    refused = graphql(server, key, "{ workspace { id } }")
    assert refused["errors"][0]["extensions"]["code"] == "WORKSPACE_DISABLED"
    assert (
        httpx.post(f"{server.base_url}/hooks/{hook['id']}", json={"phone": "+34600111222"}).status_code == 410
    )
    assert konvo(server, "list", "--status", "disabled").stdout.split()[0] == workspace_id

    enabled = konvo(server, "enable", workspace_id)
    assert enabled.returncode == 0 and "ACTIVE" in enabled.stdout
    assert data(server, key, "{ workspace { id } }")["workspace"]["id"] == workspace_id

    mistyped = konvo(server, "delete", workspace_id, stdin="ws_something_else\n")
    assert mistyped.returncode == 1 and "nothing was deleted" in mistyped.stderr
    assert data(server, key, "{ workspace { id } }")["workspace"]["id"] == workspace_id

    needles = workspace_needles(services, database, workspace_id)
    assert redis_mentions(services, needles), "its timer should be in Redis before the deletion"
    deleted = konvo(server, "delete", workspace_id, stdin=f"{workspace_id}\n")
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted  {workspace_id}:" in deleted.stdout
    assert (
        graphql(server, key, "{ workspace { id } }")["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    )
    assert store_mentions(services, database, workspace_id) == {}
    assert redis_mentions(services, needles) == []
    assert workspace_id not in konvo(server, "list").stdout


def test_the_command_says_what_is_wrong(server: ServedProcess) -> None:
    wrong_key = konvo(server, "list", key="not-the-operator-key-at-all-0123456789")
    assert wrong_key.returncode == 1 and "UNAUTHENTICATED" in wrong_key.stderr
    bad_zone = konvo(server, "create", "Tienda", "--timezone", "Mars/Olympus")
    assert (
        bad_zone.returncode == 1 and "INVALID_INPUT" in bad_zone.stderr and "Mars/Olympus" in bad_zone.stderr
    )
    missing = konvo(server, "disable", "ws_nope")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    no_key = konvo(server, "list", key="")
    assert no_key.returncode == 2 and "KONVO_OPERATOR_KEY" in no_key.stderr


def _mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, dict):
        return any(_mentions(k, needle) or _mentions(v, needle) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v, needle) for v in value)
    return False


def store_mentions(services: ServiceURLs, database: str, workspace_id: str) -> dict[str, int]:
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[database]
        found = {}
        for name in db.list_collection_names():
            count = sum(1 for document in db[name].find({}) if _mentions(document, workspace_id))
            if count:
                found[name] = count
        return found
    finally:
        client.close()


def workspace_needles(services: ServiceURLs, database: str, workspace_id: str) -> set[str]:
    """The ids Redis keys of the workspace would be named by or hold: the workspace's, its
    documents', its API keys' and its timers'."""
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        db = client[database]
        needles = {workspace_id}
        for name in db.list_collection_names():
            for document in db[name].find({"workspace_id": workspace_id}):
                needles.add(str(document["_id"]))
                needles.update(str(document[f]) for f in ("key_id", "phone_number_id") if document.get(f))
                needles.update(timer["id"] for timer in document.get("timers") or [])
        return needles
    finally:
        client.close()


def redis_mentions(services: ServiceURLs, needles: set[str]) -> list[str]:
    """Keys naming one of ``needles`` or holding it (job records, queue members, values)."""
    client = redis.Redis.from_url(services.redis_url)
    wanted = [n.encode() for n in needles]
    try:
        found = []
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            contents: list[bytes] = [key]
            if kind == "string":
                contents.append(client.get(key) or b"")
            elif kind == "zset":
                contents += client.zrange(key, 0, -1)
            elif kind == "hash":
                contents += [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == "set":
                contents += list(client.smembers(key))
            elif kind == "list":
                contents += client.lrange(key, 0, -1)
            if any(n in part for part in contents for n in wanted):
                found.append(key.decode(errors="replace"))
        return found
    finally:
        client.close()
