"""Settings read from the environment (``KONVO_*``) so one build runs in dev, tests and production."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    actor_idle_seconds: float = Field(60.0, description="passivate a contact actor idle this long")
    timer_poll_seconds: float = Field(0.05, description="how often the arq worker polls due timers")
    recovery_interval_seconds: float = Field(
        60.0, description="how often timers in the store are re-armed in Redis"
    )
    start_timer_worker: bool = True

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

    @property
    def embedded_store(self) -> bool:
        return self.mongodb_uri is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None
