"""Which shard a contact is in and which replica owns a shard: pure, and pinned to known answers.

Every replica computes both on its own, and during a rolling deploy replicas of two versions do:
a changed hash (another digest size, another modulus) would make them disagree on who owns what
(leases keep that safe, but shards would bounce between them). So beyond the properties, the
answers for a few fixed inputs are part of the contract.
"""

from __future__ import annotations

import itertools

from server.actors.leases import rendezvous_owner, shard_of
from server.ids import ContactKey

KEYS = [ContactKey("ws", "+34600111222"), ContactKey("ws2", "+15550100"), ContactKey("ws", "bsuid:AbC")]


def test_a_contact_is_in_the_same_shard_in_every_process_and_version() -> None:
    assert [shard_of(k, 64) for k in KEYS] == [45, 47, 40]
    assert [shard_of(k, 7) for k in KEYS] == [5, 4, 1]


def test_the_owner_of_each_shard_is_the_same_in_every_process_and_version() -> None:
    assert (
        "".join(rendezvous_owner(s, ["a", "b", "c"]) or "-" for s in range(24)) == "bccbbacbcacaccaacbbcaabc"
    )


def test_with_no_replica_no_shard_has_an_owner() -> None:
    assert rendezvous_owner(3, []) is None


def test_the_owner_does_not_depend_on_the_order_replicas_are_listed_in() -> None:
    replicas = ["r1", "r2", "r3", "r4"]
    for shard in range(32):
        owners = {rendezvous_owner(shard, order) for order in itertools.permutations(replicas)}
        assert len(owners) == 1


def test_a_replica_leaving_moves_only_the_shards_it_owned() -> None:
    replicas = ["r1", "r2", "r3", "r4"]
    before = {s: rendezvous_owner(s, replicas) for s in range(64)}
    after = {s: rendezvous_owner(s, ["r1", "r2", "r4"]) for s in range(64)}
    moved = {s for s in before if before[s] != after[s]}
    assert moved == {s for s, owner in before.items() if owner == "r3"}
    assert moved and len(moved) < 32  # about a quarter
