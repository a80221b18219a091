"""The docs' runnable examples, run against a real server process so they cannot rot.

Every block marked ``tested`` in ``docs/*.md`` runs in document order (``sh`` with bash, ``python``
with this interpreter) against one freshly started server with its demo workspace, an operator
key and a WhatsApp channel in a workspace of its own (the webhook examples' ``CHANNEL_ID``,
``VERIFY_TOKEN`` and ``APP_SECRET``); each must exit 0 and print what its ``output`` block shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceURLs
from tests.e2e.servers import replicas
from tests.support.doc_examples import Example, examples, output_problem

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPERATOR_KEY = "docs-operator-key-0123456789abcdefghijk"
EXAMPLES = [example for path in sorted(DOCS.glob("*.md")) for example in examples(path)]


@pytest.fixture(scope="module")
def environment(services: ServiceURLs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with replicas(services, tmp_path_factory.mktemp("docs"), KONVO_OPERATOR_KEY=OPERATOR_KEY) as (served,):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONVO_")}
        env.update(
            KONVO_URL=served.base_url,
            KONVO_API_KEY=served.api_key,
            KONVO_OPERATOR_KEY=OPERATOR_KEY,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            **whatsapp_channel(served.base_url),
        )
        yield env


def whatsapp_channel(base_url: str) -> dict[str, str]:
    """A channel the WhatsApp examples post to, in a workspace made for it (no flow sends there)."""
    created = httpx.post(
        f"{base_url}/operator/graphql",
        json={
            "query": 'mutation { createWorkspace(input: {name: "Canal", timezone: "Europe/Madrid"}) { adminKey } }'
        },
        headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
        timeout=30,
    ).json()["data"]["createWorkspace"]
    spec = {
        "phoneNumberId": "109000000000001",
        "wabaId": "209000000000001",
        "accessToken": "docs-access-token",
        "appSecret": "docs-app-secret",
        "verifyToken": "docs-verify-token",
    }
    channel = httpx.post(
        f"{base_url}/graphql",
        json={
            "query": "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id } }",
            "variables": {"i": spec},
        },
        headers={"Authorization": f"Bearer {created['adminKey']}"},
        timeout=30,
    ).json()
    assert not channel.get("errors"), channel
    return {
        "CHANNEL_ID": channel["data"]["connectWhatsApp"]["id"],
        "VERIFY_TOKEN": spec["verifyToken"],
        "APP_SECRET": spec["appSecret"],
    }


def test_the_docs_have_tested_examples() -> None:
    assert len([e for e in EXAMPLES if e.path.name == "api.md"]) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_runs_and_prints_what_the_docs_say(example: Example, environment: dict[str, str]) -> None:
    if example.language == "sh":
        command = ["bash", "-euo", "pipefail", "-c", example.code]
    else:
        command = [sys.executable, "-c", example.code]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, cwd=DOCS)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stdout}\n{done.stderr}"
    problem = output_problem(example, done.stdout)
    assert problem is None, f"{example.name} printed what the docs do not say: {problem}\n{done.stdout}"
