"""Real HTTP servers for the webhook rows: ``konvo serve`` on the bench's store and Redis, a bare
Starlette app on the same uvicorn settings, a WhatsApp channel at the loopback Graph API fake, and
the signed webhook bodies and the client that POSTs them at a fixed concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from scripts.benchmarks import harness
from server.channels.whatsapp.signature import HEADER, signature_for
from server.clock import SystemClock
from server.config import Settings
from server.embedded import free_port
from server.runtime import Runtime
from server.store.channels import new_channel

CHANNEL_ID = "chn_bench"
APP_SECRET = "bench-app-secret"
CONCURRENCY = 16  # httpx's pool gets slower past ~16 connections: 64 made the client the bottleneck
KONVO = str(Path(sys.executable).with_name("konvo"))

# The same uvicorn settings as ``server.cli._run`` (loop/http "auto": uvloop + httptools when
# installed), so the bare app measures the HTTP ceiling of the server the product runs on.
BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def webhook(request):
    await request.body()
    return JSONResponse({"ok": True})

app = Starlette(routes=[Route("/webhooks/whatsapp/{channel_id}", webhook, methods=["GET", "POST"])])
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]),
                                       log_level="warning", lifespan="on"))
server.run()
"""


async def add_channel(runtime: Runtime, fake_fields: dict[str, Any]) -> dict[str, Any]:
    """The bench workspace's WhatsApp channel, sending to the fake at the highest throughput."""
    document = new_channel(
        channel_id=CHANNEL_ID,
        workspace_id=harness.WORKSPACE,
        verify_token="bench-verify",
        app_secret=APP_SECRET,
        throughput_per_second=1000,
        created_at=SystemClock().now(),
        **fake_fields,
    )
    document["webhook_verified_at"] = SystemClock().now()  # Meta's handshake done (server/store/channels.py)
    await runtime.channels.insert(document)
    return document


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start: {log.read_text()[-2000:]}")


@contextmanager
def _process(args: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    scratch = Path(tempfile.mkdtemp(prefix="konvo-bench-serve-"))
    log = scratch / "out.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def konvo_serve(settings: Settings, profile: Path | None = None) -> Iterator[str]:
    """``konvo serve`` on the bench's store and Redis; yields its base URL. ``profile``: cProfile it."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KONVO_")},
        "KONVO_MONGODB_URI": settings.mongodb_uri or "",
        "KONVO_REDIS_URL": settings.redis_url or "",
        "KONVO_MONGODB_DB": settings.mongodb_db,
        "KONVO_PORT": str(port),
        "KONVO_DATA_DIR": str(settings.data_dir / "server"),  # removed with the bench's services
        "KONVO_LOG_LEVEL": "WARNING",
        # The bench seeds channels itself: the server must open them with the same key.
        "KONVO_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
        "KONVO_EGRESS_ALLOW": settings.egress_allow or "",
    }
    args = [KONVO, "serve"]
    if profile is not None:
        args = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "server.cli", "serve"]
    with _process(args, env, port):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def bare_starlette() -> Iterator[str]:
    port = free_port()
    with _process([sys.executable, "-c", BARE_APP, str(port)], dict(os.environ), port):
        yield f"http://127.0.0.1:{port}"


def _metadata(phone_number_id: str) -> dict[str, str]:
    return {"display_phone_number": "15550783881", "phone_number_id": phone_number_id}


def text_webhook(phone_number_id: str, phone: str, wamid: str, text: str = "sí") -> bytes:
    """Meta's text-message webhook from ``phone`` (E.164), as sent now."""
    digits = phone.lstrip("+")
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": _metadata(phone_number_id),
                            "contacts": [{"profile": {"name": "Bench"}, "wa_id": digits}],
                            "messages": [
                                {
                                    "from": digits,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "text": {"body": text},
                                    "type": "text",
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def status_webhook(phone_number_id: str, phone: str, wamid: str) -> bytes:
    """A ``delivered`` status for a message of ours the store does not know (it is parked)."""
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": _metadata(phone_number_id),
                            "statuses": [
                                {
                                    "id": wamid,
                                    "status": "delivered",
                                    "timestamp": str(int(time.time())),
                                    "recipient_id": phone.lstrip("+"),
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", HEADER: signature_for(body, APP_SECRET)}


def client(base_url: str, concurrency: int = CONCURRENCY) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0)


async def post_all(
    http: httpx.AsyncClient,
    bodies: list[bytes],
    concurrency: int = CONCURRENCY,
    on_post: Callable[[int, float], None] | None = None,
    pace: Callable[[int], Awaitable[None]] | None = None,
) -> float:
    """POST every body (signed) with ``concurrency`` workers; seconds taken. Any non-200 raises.

    ``on_post(i, monotonic)`` is called just before body ``i`` goes out; ``pace(i)`` may wait first.
    """
    path = f"/webhooks/whatsapp/{CHANNEL_ID}"
    position = iter(range(len(bodies)))
    signed = [(body, signed_headers(body)) for body in bodies]

    async def worker() -> None:
        for i in position:
            if pace is not None:
                await pace(i)
            body, headers = signed[i]
            if on_post is not None:
                on_post(i, time.monotonic())
            response = await http.post(path, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started
