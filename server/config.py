"""Settings read from the environment (``KONVO_*``) so one build runs in dev, tests and production."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_replica_id() -> str:
    """Unique per process start (a restarted process is a new replica): host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}".replace("/", "-")


class Settings(BaseSettings):
    """Every knob of a server process; embedded services are used when no URI is given."""

    model_config = SettingsConfigDict(env_prefix="KONVO_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".konvo")

    mongodb_uri: str | None = None
    mongodb_db: str = "konvo"
    redis_url: str | None = None
    store_port: int = 27117
    redis_port: int = 6479

    demo_api_key: str | None = None
    log_level: str = "INFO"
    store_stats: bool = Field(
        False,
        description=(
            "count store commands and documents written (driver command monitoring) on /metrics; "
            "for benchmarks and diagnosis, it costs a little CPU per command"
        ),
    )

    actor_idle_seconds: float = Field(60.0, description="passivate a contact actor idle this long")
    timer_poll_seconds: float = Field(0.05, description="how often the arq worker polls due timers")
    recovery_interval_seconds: float = Field(
        60.0, description="how often timers in the store are re-armed in Redis"
    )
    start_timer_worker: bool = True
    contact_scan_interval_seconds: float = Field(
        600.0,
        description=(
            "how often recovery also scans every contact for timers and stuck outboxes; it always "
            "does at start and when Redis lost its data (the scan costs the store at scale)"
        ),
    )
    # Timer firing and re-arming (server/actors/timers.py, server/actors/recovery.py).
    timer_batch_size: int = Field(200, description="due timers the timer worker claims per Redis call")
    timer_max_in_flight: int = Field(
        500, description="timer turns one process runs at once; the rest wait, due, in Redis"
    )
    timer_claim_seconds: float = Field(
        60.0, description="a claimed timer whose turn has not committed by then is run again (crash)"
    )
    recovery_batch_size: int = Field(500, description="timers re-armed per Redis call by recovery")
    inbound_grace_seconds: float = Field(
        30.0, description="recovery re-applies stored inbound messages left unapplied this long"
    )

    # API limits (server/graphql/limits.py): every one answers with an ``extensions.code``.
    max_query_depth: int = Field(12, description="deepest selection nesting a query may have")
    max_query_tokens: int = Field(2000, description="most lexer tokens a GraphQL document may have")
    max_query_aliases: int = Field(30, description="most aliased fields a document may have")
    max_body_bytes: int = Field(1_000_000, description="largest HTTP request body accepted (413 above)")
    rate_limit_requests: int = Field(
        1200, description="operations one API key may run per rate window, counted across processes"
    )
    rate_limit_window_seconds: int = Field(60, description="length of the per-key rate window")
    max_subscriptions_per_connection: int = Field(
        20, description="operations one WebSocket connection may have running at once"
    )

    # Replicas (server/actors/leases.py): contacts are sharded; each shard is leased by one replica.
    replica_id: str = Field(
        default_factory=default_replica_id,
        description="this process's id among the replicas: unique among running processes (no '/')",
    )
    shard_count: int = Field(
        64, ge=1, le=4096, description="contact shards leased among replicas; the same on every replica"
    )
    lease_ttl_seconds: float = Field(
        5.0, gt=0.5, description="a dead replica's shards move to the others after about this long"
    )

    @property
    def embedded_store(self) -> bool:
        return self.mongodb_uri is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None
