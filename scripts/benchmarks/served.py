"""Real HTTP servers for the webhook rows: ``konvo serve`` on the bench's store and Redis, a bare
Starlette app on the same uvicorn settings, a WhatsApp channel at the loopback Graph API fake, the
signed webhook requests a load generator (``loadgen.py``, a process of its own) POSTs, and the
processes whose CPU a row measures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.benchmarks import harness
from scripts.benchmarks.costs import StoreWork
from scripts.benchmarks.graph_fake import GraphFakeProcess
from scripts.benchmarks.loadgen import LoadGenerator, LoadResult
from server.channels.whatsapp.signature import HEADER, signature_for
from server.clock import SystemClock
from server.config import Settings
from server.dev.embedded import free_port
from server.runtime import Runtime
from server.store.channels import new_channel

CHANNEL_ID = "chn_bench"
APP_SECRET = "bench-app-secret"
CONCURRENCY = 16  # webhook requests in flight, as Meta's delivery does under load
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

# ``konvo serve`` under cProfile counting CPU time, not wall time: on a machine shared with the store
# and the load generator, wall time charges a function for the time its process waited for a core.
# The profiler starts at SIGUSR1 (``Served.profile_window``: the bench's measured window), so
# imports, seeding and startup do not crowd the event path out of the profile.
CPU_PROFILED = """
import cProfile, signal, sys, time
from server.cli import app
out = sys.argv[1]
sys.argv = ["konvo", *sys.argv[2:]]
profiler = cProfile.Profile(time.process_time)
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
try:
    app()
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""

# ``konvo serve`` under a sampler in CPU time (``KONVO_BENCH_SAMPLE``): every millisecond of the
# process's CPU (``ITIMER_PROF``) the main thread's Python stack is counted, written as collapsed
# stacks ("frame;frame;... count" lines, the flame graph tools' input). Unlike cProfile it adds
# no cost per call, so call-heavy code is not overstated; unlike a wall-clock sampler it does not
# charge a function for the time its process waited for a core on a busy machine.
CPU_SAMPLED = """
import collections, signal, sys
from server.cli import app
out = sys.argv[1]
sys.argv = ["konvo", *sys.argv[2:]]
stacks = collections.Counter()

def sample(_signum, frame):
    names = []
    while frame is not None:
        code = frame.f_code
        where = code.co_filename.rsplit("site-packages/", 1)[-1]
        names.append(f"{code.co_name} ({where}:{code.co_firstlineno})")
        frame = frame.f_back
    stacks[";".join(reversed(names))] += 1

signal.signal(signal.SIGPROF, sample)
signal.signal(signal.SIGUSR1, lambda *_: signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001))
try:
    app()
finally:
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    with open(out, "w") as file:
        file.writelines(f"{stack} {count}\\n" for stack, count in stacks.items())
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


@dataclass(frozen=True)
class Served:
    """A server process the benchmark started: where it listens and its process id."""

    url: str
    pid: int
    profiled: bool = False

    def profile_window(self) -> None:
        """Start the served profile (``KONVO_BENCH_PROFILE``) at the measured window's opening."""
        if self.profiled:
            os.kill(self.pid, signal.SIGUSR1)

    def store_work(self) -> StoreWork:
        """The store work counted by the server so far (its ``/metrics``, ``KONVO_STORE_STATS=1``)."""
        text = httpx.get(self.url + "/metrics", timeout=10.0).raise_for_status().text
        series = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        return StoreWork.from_metrics(series)


@contextmanager
def konvo_serve(
    settings: Settings, profile: Path | None = None, sample: Path | None = None
) -> Iterator[Served]:
    """``konvo serve`` on the bench's store and Redis, counting its store work. ``profile``: cProfile
    it; ``sample``: sample its stacks in CPU time (both from ``Served.profile_window`` on)."""
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
        "KONVO_STORE_STATS": "1",
    }
    args = [KONVO, "serve"]
    if profile is not None:
        args = [sys.executable, "-c", CPU_PROFILED, str(profile), "serve"]
    elif sample is not None:
        args = [sys.executable, "-c", CPU_SAMPLED, str(sample), "serve"]
    with _process(args, env, port) as process:
        profiled = profile is not None or sample is not None
        yield Served(f"http://127.0.0.1:{port}", process.pid, profiled=profiled)


@contextmanager
def bare_starlette() -> Iterator[Served]:
    port = free_port()
    with _process([sys.executable, "-c", BARE_APP, str(port)], dict(os.environ), port) as process:
        yield Served(f"http://127.0.0.1:{port}", process.pid)


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


def signed(bodies: list[bytes]) -> list[tuple[dict[str, str], bytes]]:
    """The requests a load generator POSTs to the bench channel's webhook: each body, signed."""
    return [(signed_headers(body), body) for body in bodies]


def webhook_url(base_url: str) -> str:
    return f"{base_url}/webhooks/whatsapp/{CHANNEL_ID}"


def check_answers(result: LoadResult) -> None:
    """Every webhook must be acknowledged (200): a refused one is a broken benchmark, not a figure."""
    refused = {status: n for status, n in result.statuses.items() if status != 200}
    if refused:
        raise RuntimeError(f"webhooks answered {refused}: {result.errors}")


def processes(
    services: harness.Services,
    server: Served | None = None,
    load: LoadGenerator | None = None,
    fake: GraphFakeProcess | None = None,
) -> dict[str, int | None]:
    """The processes of a served row, by role (``costs.PROCESSES``); the bench is this process."""
    return {
        "server": server.pid if server is not None else None,
        "store": services.store_pid,
        "redis": services.redis_pid,
        "loadgen": load.pid if load is not None else None,
        "fake": fake.pid if fake is not None else None,
        "bench": os.getpid(),
    }
