"""A real Redis Cluster of three masters on loopback, from the bundled ``redis-server`` binary.

Each node is ``redis-server --cluster-enabled yes`` (no persistence); the slots are split in three
with ``CLUSTER ADDSLOTS`` and the nodes introduced with ``CLUSTER MEET``, as ``redis-cli --cluster
create`` does, then the cluster is used once every node reports ``cluster_state:ok`` and sees all
three masters. The server reaches it with a ``redis+cluster://`` URL (any node is a seed).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import redis

from server.dev.embedded import LOCALHOST, ManagedProcess, free_port, redis_process

SLOTS = 16384
READY_SECONDS = 30.0
BUS_OFFSET = 10_000  # a node gossips on its port + 10000, so its port must be 55535 or less


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((LOCALHOST, port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    def __init__(self, base: Path, masters: int = 3) -> None:
        self.nodes: list[ManagedProcess] = []
        for n in range(masters):
            plain = redis_process(base / f"node{n}", cluster_port(), persist=False)
            self.nodes.append(
                dataclasses.replace(
                    plain,
                    name=f"redis-cluster-{n}",
                    argv=[
                        *plain.argv,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            )

    @property
    def url(self) -> str:
        return f"redis+cluster://{LOCALHOST}:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            self._join()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _join(self) -> None:
        clients = [redis.Redis(host=LOCALHOST, port=port, socket_timeout=5) for port in self.ports]
        try:
            share = SLOTS // len(clients)
            for n, client in enumerate(clients):
                last = SLOTS if n == len(clients) - 1 else (n + 1) * share
                client.execute_command("CLUSTER ADDSLOTS", *range(n * share, last))
            for port in self.ports[1:]:
                clients[0].execute_command("CLUSTER MEET", LOCALHOST, port)
            deadline = time.monotonic() + READY_SECONDS
            while not all(self._ready(client) for client in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster on {self.ports} did not form in {READY_SECONDS}s")
                time.sleep(0.05)  # the nodes gossip on their own clock: nothing to wait on but them
        finally:
            for client in clients:
                client.close()

    def _ready(self, client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == len(
            self.nodes
        )
