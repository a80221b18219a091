"""Redis clients of a server process, on a blocking connection pool, for one Redis or a Redis Cluster.

redis-py 5.3's default ``ConnectionPool.get_connection`` holds one pool-wide lock while it checks
the connection it hands out, and that check always waits a full event-loop round: a process can
then issue about one Redis command per loop iteration, whatever the load (redis/redis-py#3692,
fixed upstream in 7.2 by #3885; arq 0.28 pins redis<6). Under P1 of issue 19 the lock was held
80-100% of the time, turns queued behind it for seconds and shard-lease renewals with them.
``BlockingConnectionPool`` checks the connection outside its lock; with it the same load ran at
1.5 times the rate and no shard lost trust. Both clients of a process (plain commands and pub/sub,
and arq's job queue) are built here so neither goes back to the default pool.

A ``redis+cluster://host:port`` (or ``rediss+cluster://``) URL selects Redis Cluster: commands go
through ``RedisCluster`` (the node is any seed; the others are discovered). Two things cannot:

- pub/sub: redis-py 5's asyncio ``RedisCluster`` has none. Classic pub/sub is cluster-wide (a
  PUBLISH on any node reaches subscribers on every node), so subscriptions use a plain connection
  to one node of the cluster, chosen afresh on each reconnect (:func:`subscriber`).
- arq: ``ArqRedis`` is a plain ``Redis`` and arq enqueues and finishes jobs with WATCH/MULTI, which
  redis-py's cluster pipeline refuses. Every arq key carries one hash tag
  (``server/redis_keys.py``), so arq only ever talks to the node serving that slot: its pool opens
  each connection to that node, looked up in the cluster's slot map, and looks again after a
  MOVED reply or a lost connection (a failover or a resharding costs the commands in flight, like
  a short outage: timers and jobs are retried, recovery re-arms the rest).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

MAX_CONNECTIONS = 128  # per pool; a command waits for a free connection beyond that
CONNECTION_WAIT_SECONDS = 30  # then it fails (ConnectionError), like any Redis outage
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

RedisCommands = Redis | RedisCluster


@dataclass(frozen=True)
class RedisTarget:
    """``KONVO_REDIS_URL`` read: the URL redis-py understands and whether it names a cluster."""

    url: str
    cluster: bool

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError(f"KONVO_REDIS_URL must be a URL (redis://, redis+cluster://...): {url!r}")
        plain = CLUSTER_SCHEMES.get(scheme.lower())
        if plain is not None:
            return cls(f"{plain}://{rest}", cluster=True)
        return cls(url, cluster=False)


def register_script(redis: RedisCommands, script: str) -> AsyncScript:
    """A Lua script run by EVALSHA on ``redis`` (loaded again after a NOSCRIPT reply).

    redis-py annotates ``register_script``'s ``self`` as a plain ``Redis``, yet its ``AsyncScript``
    handles a cluster client explicitly (``get_encoder`` falls back to the cluster's) and only calls
    ``evalsha``/``script_load``, which ``RedisCluster`` routes by the script's keys."""
    return redis.register_script(script)  # type: ignore[misc]  # stubs: self is Redis; cluster works


def is_cluster_url(url: str) -> bool:
    return RedisTarget.parse(url).cluster


def connection_pool(url: str) -> BlockingConnectionPool:
    return BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_SECONDS
    )


def redis_client(url: str) -> RedisCommands:
    """Commands and scripts of the process (and pub/sub, through :func:`subscriber`)."""
    target = RedisTarget.parse(url)
    if target.cluster:
        return RedisCluster.from_url(target.url, max_connections=MAX_CONNECTIONS)
    return Redis(connection_pool=connection_pool(target.url))


async def subscriber(client: RedisCommands) -> Redis:
    """A client for one pub/sub connection: ``client`` itself on one Redis, else a plain client to
    one primary of the cluster (the caller closes it; call again after a lost connection)."""
    if isinstance(client, Redis):
        return client
    await client.initialize()
    node = random.choice(client.get_primaries())
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in ("host", "port")}
    pool = BlockingConnectionPool(
        connection_class=node.connection_class, host=node.host, port=node.port, max_connections=2, **kwargs
    )
    return Redis(connection_pool=pool)


def arq_client(url: str, slot_tag: str) -> ArqRedis:
    """arq's job queue (timers, external syncs), on a pool of its own. On a cluster it is pinned to
    the node serving the slot of ``slot_tag``, the hash tag every arq key carries."""
    target = RedisTarget.parse(url)
    if not target.cluster:
        return ArqRedis(connection_pool(target.url))
    kwargs: dict[str, Any] = {**parse_url(target.url)}  # redis-py's untyped **connection_kwargs
    ssl = kwargs.pop("connection_class", Connection) is SSLConnection
    owner = SlotOwner(RedisCluster.from_url(target.url, max_connections=4), key_slot(slot_tag.encode()))
    pool = BlockingConnectionPool(
        connection_class=SlotSSLConnection if ssl else SlotConnection,
        owner=owner,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
        **kwargs,
    )
    return ArqRedis(pool)


class SlotOwner:
    """Where one hash slot is served, from the cluster's slot map; refreshed once told it moved."""

    def __init__(self, cluster: RedisCluster, slot: int) -> None:
        self.cluster = cluster
        self.slot = slot
        self._address: tuple[str, int] | None = None
        self._stale = True

    async def address(self) -> tuple[str, int]:
        if self._address is None or self._stale:
            await self.cluster.initialize()
            if self._address is not None:  # told it moved: read the slot map again
                await self.cluster.nodes_manager.initialize()
            node = self.cluster.nodes_manager.get_node_from_slot(self.slot)
            self._address = (node.host, int(node.port))  # typed str | int: a URL's port may be either
            self._stale = False
        return self._address

    def moved(self, host: str, port: int) -> None:
        self._address = (host, port)

    def lost(self) -> None:
        self._stale = True


class _SlotPinned(Connection):
    """A connection opened to the node that serves one slot, reopened elsewhere when that changes.

    Derived from ``Connection`` so ``super()`` is typed; used ahead of ``Connection`` or ``SSLConnection``."""

    def __init__(self, *, owner: SlotOwner, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self._owner.address()
        try:
            await super()._connect()
        except OSError:
            self._owner.lost()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if self._redirected(str(exc)):
                await self.disconnect()  # reopened to the slot's new node on next use
            raise
        except (RedisConnectionError, OSError):
            self._owner.lost()
            raise

    def _redirected(self, message: str) -> bool:
        """Note where a MOVED reply points, or that the slot map must be read again."""
        word, _, rest = message.partition(" ")
        if word == "MOVED":
            host, _, port = rest.rpartition(" ")[2].rpartition(":")
            self._owner.moved(host or self.host, int(port))
            return True
        if word in ("CLUSTERDOWN", "TRYAGAIN", "ASK"):
            self._owner.lost()
            return True
        return False


class SlotConnection(_SlotPinned, Connection):
    pass


class SlotSSLConnection(_SlotPinned, SSLConnection):
    pass
