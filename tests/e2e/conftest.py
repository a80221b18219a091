"""``konvo serve`` started as a real process on free ports, stopped like a person would (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.dev.embedded import free_port, pid_alive


@dataclass
class ServedProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    port: int
    banner: dict[str, str] = field(default_factory=dict)
    children: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return self.banner["API key"]

    def read_banner(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while "API key" not in self.banner:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"serve did not start (exit {self.process.poll()}); got {self.banner}")
            key, _, value = self.process.stdout.readline().partition(": ")
            if value:
                self.banner[key.strip()] = value.strip()
        self.children = [int(p.read_text()) for p in (self.data_dir / "run").glob("*.pid")]

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C, and the exit code once the process has stopped."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedProcess]:
    port = free_port()
    data_dir = tmp_path / "konvo"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KONVO_")},
        "KONVO_DATA_DIR": str(data_dir),
        "KONVO_PORT": str(port),
        "KONVO_STORE_PORT": str(free_port()),
        "KONVO_REDIS_PORT": str(free_port()),
        "KONVO_LOG_LEVEL": "WARNING",
    }
    konvo = str(Path(sys.executable).with_name("konvo"))
    process = subprocess.Popen(
        [konvo, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    served = ServedProcess(process, data_dir, port)
    try:
        served.read_banner()
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in served.children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
