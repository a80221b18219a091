"""The embedded-service launcher: stale pid files, orphans, busy ports, clean stops."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.config import Settings
from server.dev.embedded import (
    ManagedProcess,
    PortInUseError,
    free_port,
    mongodb_uri_for,
    pid_alive,
    redis_process,
    start_services,
    store_process,
)
from server.store.database import Database

REPO_ROOT = Path(__file__).resolve().parents[2]


def _redis(data_dir: Path, port: int) -> ManagedProcess:
    return redis_process(data_dir, port, persist=False)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_stale_pid_file_of_dead_process_is_removed(tmp_path: Path) -> None:
    proc = _redis(tmp_path, free_port())
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text(f"{_dead_pid()}\n")
    proc.start()
    try:
        assert proc.running()
        assert proc.pid_file.read_text().strip() == str(proc.pid)
    finally:
        proc.stop()
    assert not proc.pid_file.exists()


def test_pid_file_naming_a_foreign_live_process_leaves_it_alone(tmp_path: Path) -> None:
    foreign = subprocess.Popen(["sleep", "30"])
    try:
        proc = _redis(tmp_path, free_port())
        proc.pid_file.parent.mkdir(parents=True)
        proc.pid_file.write_text(f"{foreign.pid}\n")
        proc.start()
        proc.stop()
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


@pytest.mark.parametrize("factory", [_redis, store_process], ids=["redis", "store"])
def test_orphan_of_a_crashed_serve_is_replaced(
    tmp_path: Path, factory: Callable[[Path, int], ManagedProcess]
) -> None:
    port = free_port()
    orphan = factory(tmp_path, port)
    orphan.start()
    orphan_pid = orphan.pid
    assert orphan_pid is not None
    # A crashed `serve` leaves its pid file and process behind; a new one takes over.
    successor = factory(tmp_path, port)
    try:
        successor.start()
        assert not pid_alive(orphan_pid)
        assert successor.running()
        assert successor.pid_file.read_text().strip() == str(successor.pid)
    finally:
        successor.stop()
        orphan.stop()


def test_port_in_use_names_the_port_and_the_setting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _redis(tmp_path, port)
        with pytest.raises(PortInUseError) as info:
            proc.start()
    message = str(info.value)
    assert str(port) in message
    assert "KONVO_REDIS_PORT" in message and "--redis-port" in message
    assert not proc.running()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        mongodb_uri=None,
        redis_url=None,
        store_port=free_port(),
        redis_port=free_port(),
    )
    services = start_services(settings, redis_persist=False)
    assert services.store is not None and services.redis is not None
    pids = [services.store.pid, services.redis.pid]
    assert services.mongodb_uri == (
        f"mongodb://127.0.0.1:{settings.store_port}/?directConnection=true&retryWrites=false"
    )
    assert services.redis_url == f"redis://127.0.0.1:{settings.redis_port}/0"
    services.stop()
    for pid in pids:
        assert pid is not None and not pid_alive(pid)
    assert list((tmp_path / "run").iterdir()) == []
    services.stop()  # idempotent


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from server.dev.embedded import redis_process\n"
        "p = redis_process(Path(sys.argv[1]), int(sys.argv[2]), persist=False)\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(free_port())],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    assert _wait_dead(child_pid), "redis-server outlived its SIGKILLed parent"


async def test_the_embedded_stores_client_sends_no_retryable_writes() -> None:
    """That store re-scans its record of retryable writes on every write (slower over time)."""
    database = Database(mongodb_uri_for(free_port()), "unused")  # connects lazily: nothing runs
    try:
        assert database.client.options.retry_writes is False
    finally:
        await database.close()
