"""Standard clients against the real server process: the `graphql-ws` npm client on Node,
`graphql-http`'s server audit, the `konvo chat` terminal, and GraphiQL's assets over HTTP."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceURLs
from tests.e2e.conftest import ServedProcess
from tests.e2e.servers import KONVO, replicas
from tests.support.catalog import ensure_catalog
from tests.support.graphql import GraphQLClient, eventually

pytestmark = pytest.mark.e2e

JS = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not installed; the JS client tests need Node 18+"
)
needs_js_packages = pytest.mark.skipif(
    not (JS / "node_modules" / "graphql-ws").exists(),
    reason="tests/js/node_modules missing: run `npm ci --prefix tests/js` (./scripts/test does)",
)


@pytest.fixture(scope="module")
def server(services: ServiceURLs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    with replicas(services, tmp_path_factory.mktemp("clients")) as (served,):
        yield served


class Lines:
    """Lines of a child's stdout, read by a thread so the test can wait with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float = 20.0) -> str:
        line = self._lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"the process ended (exit {self.process.wait()})")
        return line

    def until(self, predicate: Any, timeout: float = 20.0) -> list[str]:
        seen = []
        while True:
            seen.append(self.next(timeout))
            if predicate(seen[-1]):
                return seen


def gql(server: ServedProcess, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=30,
    )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


@needs_node
@needs_js_packages
def test_graphql_ws_client_on_node_receives_contact_updates(server: ServedProcess) -> None:
    phone = "+34622000111"
    gql(server, 'mutation($p: String!) { sandboxInbound(phone: $p, text: "hola") }', p=phone)
    process = subprocess.Popen(
        [
            NODE or "node",
            str(JS / "subscribe.mjs"),
            f"ws://127.0.0.1:{server.port}/graphql",
            server.api_key,
            phone,
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(process)
        assert lines.next() == "connected"
        snapshot = json.loads(lines.next())
        assert snapshot["phone"] == phone
        gql(server, 'mutation($p: String!) { sandboxInbound(phone: $p, text: "otra vez") }', p=phone)
        update = json.loads(lines.next())
        assert update["version"] == snapshot["version"] + 1
        assert process.wait(timeout=20) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@needs_node
@needs_js_packages
def test_graphql_http_server_audit_passes(server: ServedProcess) -> None:
    done = subprocess.run(
        [NODE or "node", str(JS / "audit.mjs"), f"{server.base_url}/graphql"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) > 40, done.stdout + done.stderr
    not_ok = [r for r in results if r["status"] != "ok"]
    assert not_ok == [], json.dumps(not_ok, indent=1)
    assert done.returncode == 0, done.stderr


CHAT_FLOW = {
    "name": "Chat demo",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "message",
            "text": "¿Quieres una oferta?",
            "buttons": [
                {"id": "yes", "title": "Sí", "next": "thanks"},
                {"id": "no", "title": "No", "next": None},
            ],
            "on_reply": "echo",
        },
        {"id": "thanks", "type": "message", "text": "¡Genial! Te la enviamos.", "next": None},
        {"id": "echo", "type": "message", "text": "Has escrito: {{run.reply}}", "next": None},
    ],
}


async def _publish_chat_flow(server: ServedProcess) -> str:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        client = GraphQLClient(http, server.api_key)
        await ensure_catalog(client, CHAT_FLOW)
        flow_id = (await client("mutation($d: JSON!) { importFlow(definition: $d) { id } }", d=CHAT_FLOW))[
            "importFlow"
        ]["id"]
        await client("mutation($id: ID!) { publishFlow(id: $id) { id } }", id=flow_id)
        return flow_id


async def test_konvo_chat_plays_the_customer(server: ServedProcess) -> None:
    flow_id = await _publish_chat_flow(server)
    phone = "+34633000444"
    chat = spawn_chat(server, phone)
    try:
        lines = Lines(chat)
        assert lines.next().startswith(f"chatting as {phone}")
        send(chat, "hola")  # opens the 24-hour window, so the flow may write back
        await _wait_for_inbound(server, phone)
        start = "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }"
        for answer, expected in (
            ("1", "bot: ¡Genial! Te la enviamos."),
            ("hola bot", "bot: Has escrito: hola bot"),
        ):
            gql(server, start, f=flow_id, p=phone)
            shown = lines.until(lambda line: line.startswith("  [2]"))
            assert shown[-3:] == ["bot: ¿Quieres una oferta?", "  [1] Sí", "  [2] No"]
            send(chat, answer)
            assert lines.until(lambda line: line.startswith("bot:"))[-1] == expected
        send(chat, "/quit")
        assert chat.wait(timeout=20) == 0
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()


async def _wait_for_inbound(server: ServedProcess, phone: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        client = GraphQLClient(http, server.api_key)
        await eventually(
            lambda: client("query($p: String!) { contact(phone: $p) { windowOpen } }", p=phone),
            lambda data: bool(data["contact"] and data["contact"]["windowOpen"]),
        )


def spawn_chat(server: ServedProcess, phone: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [KONVO, "chat", phone, "--url", server.base_url, "--api-key", server.api_key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def send(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def test_konvo_chat_explains_a_bad_key(server: ServedProcess) -> None:
    done = subprocess.run(
        [KONVO, "chat", "+34600000000", "--url", server.base_url, "--api-key", "konvo_wrong"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "unknown or revoked" in done.stderr, done


def test_graphiql_assets_are_served_by_the_process(server: ServedProcess) -> None:
    page = httpx.get(f"{server.base_url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql.min.js" in page.text
    assert httpx.get(f"{server.base_url}/graphql/assets/graphiql.min.js").status_code == 200
