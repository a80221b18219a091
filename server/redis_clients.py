"""Redis clients of a server process, on a blocking connection pool.

redis-py 5.3's default ``ConnectionPool.get_connection`` holds one pool-wide lock while it checks
the connection it hands out, and that check always waits a full event-loop round: a process can
then issue about one Redis command per loop iteration, whatever the load (redis/redis-py#3692,
fixed upstream in 7.2 by #3885; arq 0.28 pins redis<6). Under P1 of issue 19 the lock was held
80-100% of the time, turns queued behind it for seconds and shard-lease renewals with them.
``BlockingConnectionPool`` checks the connection outside its lock; with it the same load ran at
1.5 times the rate and no shard lost trust. Both clients of a process (plain commands and pub/sub,
and arq's job queue) are built here so neither goes back to the default pool.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, Redis

MAX_CONNECTIONS = 128  # per pool; a command waits for a free connection beyond that
CONNECTION_WAIT_SECONDS = 30  # then it fails (ConnectionError), like any Redis outage


def connection_pool(url: str) -> BlockingConnectionPool:
    return BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_SECONDS
    )


def redis_client(url: str) -> Redis:
    """Commands, scripts and pub/sub of the process."""
    return Redis(connection_pool=connection_pool(url))


def arq_client(url: str) -> ArqRedis:
    """arq's job queue (timers, external syncs), on a pool of its own."""
    return ArqRedis(connection_pool(url))
