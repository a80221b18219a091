"""A cheap HTTP/1.1 load generator in a process of its own, so a benchmark measures the server.

httpx costs 0.84-1.68 ms of client CPU per request (issue 19), more than the server's budget per
webhook: a load generator written with it measured itself, and shared the benchmark's process
and cores with the Graph API fake. This one pre-encodes every request, keeps ``concurrency``
keep-alive connections on raw asyncio streams (uvloop when installed) and parses only the status
line and the body's length.

The benchmark drives it through ``LoadGenerator``: the child loads its requests, connects, runs
the warm-up, prints ``ready`` and waits for ``go`` on stdin (the benchmark opens its CPU window
in between); it then sends everything, prints one JSON line (seconds, the monotonic send time of
each request, the statuses) and stays alive until its stdin closes, so its CPU can be read at
the window's close. Only the standard library (and uvloop) is imported: starting it is cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
ERRORS_KEPT = 5


# --- the child process -----------------------------------------------------------------------


def encode_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep the connection) of one response; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.decode("latin-1").partition("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_block.split("\r\n"):
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # the trailer's end
        body = b"".join(chunks)
    else:
        raise ValueError(f"response {status} has neither Content-Length nor chunked encoding")
    return status, body, headers.get("connection", "").lower() != "close"


@dataclass
class _Target:
    host: str
    port: int


class _Sender:
    """Sends requests by index over ``concurrency`` keep-alive connections."""

    def __init__(self, target: _Target, requests: list[bytes], concurrency: int) -> None:
        self._target = target
        self._requests = requests
        self._concurrency = concurrency
        self._connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.sent_at = [0.0] * len(requests)
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []

    async def connect(self) -> None:
        for _ in range(self._concurrency):
            self._connections.append(await asyncio.open_connection(self._target.host, self._target.port))

    async def send(self, indexes: Sequence[int], rate: float | None) -> float:
        """Send ``indexes`` (at ``rate`` per second from now when given); seconds taken."""
        position = iter(enumerate(indexes))  # shared by the workers: each request goes out once
        begin = time.monotonic()

        async def worker(slot: int) -> None:
            reader, writer = self._connections[slot]
            for n, i in position:
                if rate is not None:
                    await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
                self.sent_at[i] = time.monotonic()
                writer.write(self._requests[i])
                status, body, keep = await read_response(reader)
                self.statuses[status] += 1
                if status >= 300 and len(self.errors) < ERRORS_KEPT:
                    self.errors.append(f"request {i}: {status} {body[:300].decode('utf-8', 'replace')}")
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection(self._target.host, self._target.port)
                    self._connections[slot] = (reader, writer)

        await asyncio.gather(*(worker(slot) for slot in range(self._concurrency)))
        return time.monotonic() - begin

    def close(self) -> None:
        for _, writer in self._connections:
            writer.close()


def _load(path: str, host: str, port: int, target: str) -> list[bytes]:
    requests = []
    with open(path) as lines:
        for line in lines:
            headers, body = json.loads(line)
            requests.append(encode_request("POST", f"{host}:{port}", target, headers, body.encode()))
    return requests


async def _child(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = _load(args.requests, host, port, url.path)
    sender = _Sender(_Target(host, port), requests, args.concurrency)
    await sender.connect()
    loop = asyncio.get_running_loop()
    warmup = min(args.warmup, len(requests))
    if warmup:
        await sender.send(range(warmup), None)
    print("ready", flush=True)
    if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "go":
        return
    seconds = await sender.send(range(warmup, len(requests)), args.rate)
    report = {
        "seconds": seconds,
        "sent_at": sender.sent_at[warmup:],
        "statuses": dict(sender.statuses),
        "errors": sender.errors,
    }
    print(json.dumps(report), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark has read our CPU
    sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="POST pre-built requests; driven by LoadGenerator")
    parser.add_argument("--url", required=True, help="http://host:port/path")
    parser.add_argument("--requests", required=True, help="JSON lines: [headers, body]")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default: unpaced)")
    parser.add_argument("--warmup", type=int, default=0, help="requests sent before 'ready' (not measured)")
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - plain asyncio works too
        runner = asyncio.Runner()
    with runner:
        runner.run(_child(args))


# --- the benchmark's side --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What one run sent: seconds from the first to the last answer, each request's send time
    (``time.monotonic``, comparable across processes) and the answers' statuses."""

    seconds: float
    sent_at: list[float]
    statuses: dict[int, int]
    errors: list[str]


class LoadGenerator:
    """``with LoadGenerator(...) as load: ...; result = await load.run()`` -- see the module doc.

    ``requests``: (headers, body) per request, POSTed to ``url``; the first ``warmup`` go out
    before ``ready``. ``rate``: requests per second, else as fast as ``concurrency`` allows.
    """

    def __init__(
        self,
        url: str,
        requests: Sequence[tuple[dict[str, str], bytes]],
        concurrency: int = 16,
        rate: float | None = None,
        warmup: int = 0,
    ) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="konvo-loadgen-"))
        path = self._scratch / "requests.jsonl"
        with path.open("w") as out:
            for headers, body in requests:
                out.write(json.dumps([headers, body.decode()]) + "\n")
        args = [sys.executable, "-m", "scripts.benchmarks.loadgen", "--url", url, "--requests", str(path)]
        args += ["--concurrency", str(concurrency), "--warmup", str(warmup)]
        if rate is not None:
            args += ["--rate", f"{rate:.6f}"]
        self._args = args
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the load generator is not started"
        return self._process.pid

    def __enter__(self) -> LoadGenerator:
        self._process = subprocess.Popen(
            self._args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if line != "ready":
            self.__exit__(None, None, None)
            raise RuntimeError(f"the load generator did not start (said {line!r})")
        return self

    async def run(self) -> LoadResult:
        """Send the requests; returns once every answer is in (the child lives on until exit)."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
        if not line:
            raise RuntimeError(f"the load generator exited with {process.wait()} before reporting")
        report = json.loads(line)
        return LoadResult(
            report["seconds"],
            report["sent_at"],
            {int(status): count for status, count in report["statuses"].items()},
            report["errors"],
        )

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self._scratch.iterdir():
            child.unlink()
        os.rmdir(self._scratch)


if __name__ == "__main__":
    main()
