"""Shared fixtures: one embedded store + Redis per session, one fresh database per test.

Set KONVO_TEST_MONGODB_URI / KONVO_TEST_REDIS_URL to run against external services
instead of starting embedded ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from pymongo import MongoClient

from server.config import Settings
from server.dev.embedded import free_port, start_services
from server.secret_box import generate_key
from tests import hypothesis_profiles
from tests.support.network import LOOPBACK_ALLOW
from tests.support.redis_cluster import LocalRedisCluster

hypothesis_profiles.load()


@dataclass(frozen=True)
class ServiceURLs:
    """Where the session's store and Redis listen."""

    mongodb_uri: str
    redis_url: str


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceURLs]:
    """Start the embedded store and Redis (no persistence) once for the whole session."""
    external_mongo = os.environ.get("KONVO_TEST_MONGODB_URI") or None
    external_redis = os.environ.get("KONVO_TEST_REDIS_URL") or None
    boot = Settings(
        data_dir=tmp_path_factory.mktemp("services"),
        mongodb_uri=external_mongo,
        redis_url=external_redis,
        store_port=free_port(),
        redis_port=free_port(),
    )
    running = start_services(boot, redis_persist=False)
    try:
        mongodb_uri = external_mongo or running.mongodb_uri
        redis_url = external_redis or running.redis_url
        assert mongodb_uri is not None and redis_url is not None
        yield ServiceURLs(mongodb_uri=mongodb_uri, redis_url=redis_url)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A real three-master Redis Cluster for the session, started when first asked for."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


# The Redis a test runs on: one server, or (long, ./scripts/test --full) the Redis Cluster.
REDIS_KINDS = ("standalone", pytest.param("cluster", marks=pytest.mark.full))


@pytest.fixture(params=REDIS_KINDS)
def redis_url(request: pytest.FixtureRequest, services: ServiceURLs) -> str:
    """The session's Redis, or its Redis Cluster (``redis+cluster://``), per parameter."""
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return services.redis_url


@pytest.fixture
def settings(services: ServiceURLs, tmp_path: Path) -> Iterator[Settings]:
    """Settings on the session's services with a database of its own, dropped afterwards; outbound
    HTTP may reach loopback (the fakes), secrets are sealed with a key of the test's own."""
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    yield Settings(
        data_dir=tmp_path,
        mongodb_uri=services.mongodb_uri,
        mongodb_db=db_name,
        redis_url=services.redis_url,
        egress_allow=LOOPBACK_ALLOW,
        secret_key=SecretStr(generate_key()),
    )
    client: MongoClient[dict[str, object]] = MongoClient(services.mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(db_name)
    finally:
        client.close()
