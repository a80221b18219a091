"""``KONVO_REDIS_URL``: a ``redis+cluster://`` (or ``rediss+cluster://``) URL selects Redis Cluster."""

from __future__ import annotations

import pytest

from server.redis_clients import RedisTarget
from server.redis_keys import ARQ_TAG, shard_lease_key, socket_slots_prefix, tag, timer_queue


@pytest.mark.parametrize(
    ("url", "plain", "cluster"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", False),
        ("rediss://cache.example:6380", "rediss://cache.example:6380", False),
        ("redis+cluster://10.0.0.5:7000", "redis://10.0.0.5:7000", True),
        ("REDISS+CLUSTER://:secret@10.0.0.5:7000", "rediss://:secret@10.0.0.5:7000", True),
    ],
)
def test_the_scheme_selects_cluster_mode(url: str, plain: str, cluster: bool) -> None:
    assert RedisTarget.parse(url) == RedisTarget(plain, cluster)


def test_a_url_without_a_scheme_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="KONVO_REDIS_URL"):
        RedisTarget.parse("127.0.0.1:6379")


def test_families_carry_their_tag_first() -> None:
    assert shard_lease_key("konvo:prod:", 7) == "{konvo:prod:shards}:lease:7"
    assert socket_slots_prefix("konvo:prod:") == "{konvo:prod:sockets}:"
    assert timer_queue("konvo:prod:").startswith(ARQ_TAG)
    with pytest.raises(ValueError):
        tag("a{b")
