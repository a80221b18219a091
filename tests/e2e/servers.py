"""Real ``konvo serve`` processes on the session's store and Redis (no embedded services of their
own, so several processes can share them like production replicas, and start faster)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from server.dev.embedded import free_port
from server.secret_box import generate_key
from server.store.workspaces import new_api_key
from tests.conftest import ServiceURLs
from tests.e2e.conftest import ServedProcess
from tests.support.network import LOOPBACK_ALLOW

KONVO = str(Path(sys.executable).with_name("konvo"))


@contextlib.contextmanager
def replicas(
    services: ServiceURLs, tmp_path: Path, count: int = 1, **extra_env: str
) -> Iterator[list[ServedProcess]]:
    """``count`` server processes sharing one database and Redis, with the same demo API key."""
    shared = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KONVO_")},
        "KONVO_MONGODB_URI": services.mongodb_uri,
        "KONVO_MONGODB_DB": f"e2e_{uuid.uuid4().hex[:10]}",
        "KONVO_REDIS_URL": services.redis_url,
        "KONVO_DEMO_API_KEY": new_api_key(),
        "KONVO_LOG_LEVEL": "WARNING",
        # Replicas share the store, so they share the key; the fakes they call are on loopback.
        "KONVO_SECRET_KEY": generate_key(),
        "KONVO_EGRESS_ALLOW": LOOPBACK_ALLOW,
        **extra_env,
    }
    started: list[ServedProcess] = []
    try:
        for n in range(count):
            # One after the other: each seeds the demo workspace idempotently.
            port = free_port()
            data_dir = tmp_path / f"replica{n}"
            env = {**shared, "KONVO_PORT": str(port), "KONVO_DATA_DIR": str(data_dir)}
            process = subprocess.Popen(
                [KONVO, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            served = ServedProcess(process, data_dir, port)
            started.append(served)
            served.read_banner()
        yield started
    finally:
        for served in started:
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGINT)
        for served in started:
            try:
                served.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait()
