"""Shard leases on the real Redis and store: balance, takeover, fencing, forwarding and handover."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from server.actors.events import (
    ExternalSyncResult,
    InboundMessage,
    SetVariables,
    StopRun,
    TagContact,
    TurnResult,
)
from server.actors.leases import ShardLeases, rendezvous_owner
from server.actors.shard_wire import (
    RemoteTurnError,
    decode_error,
    decode_event,
    decode_result,
    encode_error,
    encode_event,
    encode_result,
)
from server.clock import SystemClock, VirtualTiming
from server.config import Settings
from server.documents import ContactDoc
from server.errors import Conflict, InvalidFlow, NotFound, Unavailable
from server.ids import ContactKey
from server.packing import pack, unpack
from server.redis_clients import RedisCommands, redis_client
from server.redis_keys import shard_keys_prefix, shard_lease_key
from server.runtime import Runtime
from tests.conftest import ServiceURLs
from tests.integration.conftest import WORKSPACE, make_workspace
from tests.support.tcp_gate import TcpGate
from tests.support.timing import asleep

TTL = 1.5  # short leases keep the takeover tests quick


# Every test here runs on one Redis and (``full``) on a Redis Cluster: ``redis_url`` is parametrized.


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisCommands]:
    client = redis_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def fast_settings(fast_settings: Settings, redis_url: str) -> Settings:
    return fast_settings.model_copy(update={"redis_url": redis_url})


def fresh_prefix() -> str:
    return f"t_leases_{uuid.uuid4().hex[:10]}:"


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` holds (polled every 20 ms); fails after ``timeout``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def holders(redis: RedisCommands, prefix: str, shards: int) -> list[str | None]:
    """Who holds each shard's lease, read from Redis (``replica/epoch``)."""
    values = await redis.mget([shard_lease_key(prefix, n) for n in range(shards)])
    return [v.decode().rpartition("/")[0] if v else None for v in values]


def inbound(text: str) -> InboundMessage:
    return InboundMessage(event_id=f"wamid.{uuid.uuid4().hex}", at=SystemClock().now(), text=text)


async def test_shards_balance_over_three_replicas(redis: RedisCommands) -> None:
    prefix, shards = fresh_prefix(), 64
    replicas = [ShardLeases(redis, prefix, f"r{n}-{uuid.uuid4().hex[:6]}", shards, TTL) for n in range(3)]
    await asyncio.gather(*(r.start() for r in replicas))
    try:
        await until(lambda: all(r.settled and len(r.live) == 3 for r in replicas), 5, "all three settled")
        held = [r.held for r in replicas]
        assert sum(len(h) for h in held) == shards
        assert frozenset().union(*held) == frozenset(range(shards))
        assert all(len(h) >= 8 for h in held), [len(h) for h in held]  # ~21 each by rendezvous hashing
        in_redis = await holders(redis, prefix, shards)
        for replica in replicas:
            assert {n for n, owner in enumerate(in_redis) if owner == replica.replica_id} == replica.held
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    assert await holders(redis, prefix, shards) == [None] * shards  # stop releases every lease
    # ... leaves the membership at once (the others rebalance now, not after a ttl) ...
    assert await redis.zrange(shard_keys_prefix(prefix) + "members", 0, -1) == []
    # ... and stops ticking (a tick after stop would take the released leases back).
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not any(f"shard-leases:{r.replica_id}" in names for r in replicas)


async def test_takeover_when_a_holder_stops_renewing(redis: RedisCommands) -> None:
    prefix, shards = fresh_prefix(), 32
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL)
    b = ShardLeases(redis, prefix, "b-" + uuid.uuid4().hex[:6], shards, TTL)
    await asyncio.gather(a.start(), b.start())
    try:
        await until(lambda: a.settled and b.settled and len(a.live) == 2, 5, "both settled")
        taken = a.held
        assert taken and b.held
        key = next(
            k for k in (ContactKey("ws", f"+3460000{n:04d}") for n in range(1000)) if a.shard_of(k) in taken
        )
        epoch_before = a.fence(key)
        assert a._task is not None
        a._task.cancel()  # a "hangs": it neither renews nor releases
        began = time.monotonic()
        while not taken <= b.held:
            # Never two trusted holders: a stops trusting its lease before Redis lets b take it.
            assert not any(a.owns(s) and s in b.held for s in taken)
            assert time.monotonic() - began < TTL + 3, "b did not take a's shards"
            await asyncio.sleep(0.01)
        takeover = time.monotonic() - began
        assert b.held == frozenset(range(shards))
        assert not any(a.owns(s) for s in taken)
        with pytest.raises(
            Unavailable, match=f"no longer holds the lease of shard {a.shard_of(key)} .*retry"
        ):
            a.fence(key)
        assert b.fence(key) > epoch_before  # the new owner's epoch fences the old one out
        print(f"\n[leases] takeover of {len(taken)} shards after {takeover:.2f}s (ttl {TTL}s)")
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_lease_taken_from_under_its_holder_is_reported_lost_and_not_trusted(
    redis: RedisCommands,
) -> None:
    """A renewal that finds another replica's token (the lease expired and was taken) drops the
    lease and reports exactly that shard, so its local actors are retired (``on_lost``)."""
    prefix, shards = fresh_prefix(), 8
    lost: list[int] = []
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, on_lost=lost.append)
    await a.start()
    try:
        assert a.held == frozenset(range(shards))
        taken = 3
        await redis.set(shard_lease_key(prefix, taken), b"intruder/1", px=int(TTL * 1000))
        await until(lambda: bool(lost), TTL * 3, "the loss noticed at a renewal")
        assert lost == [taken]
        assert taken not in a.held and not a.owns(taken)
        assert a.held == frozenset(range(shards)) - {taken}  # the others renewed as before
        await a.wait_tick(TTL)
        assert a.owner_of(taken) == "intruder"
    finally:
        await a.stop()


async def test_a_holder_stops_trusting_each_lease_before_redis_lets_it_expire(redis: RedisCommands) -> None:
    """The trust (``valid_until``, by the holder's clock) ends before the key's expiry in Redis, after
    the acquisition and after every renewal: when another replica can take it, we stopped using it."""
    prefix, shards = fresh_prefix(), 4
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL)
    await a.start()
    try:
        for _ in range(3):  # the acquisition (no renewal yet), then renewals
            for shard in range(shards):
                expires_in = await redis.pttl(shard_lease_key(prefix, shard)) / 1000
                trusted_for = a._held[shard].valid_until - time.monotonic()  # read after the PTTL
                assert 0 < trusted_for < expires_in, (shard, trusted_for, expires_in)
            await a.wait_tick(TTL)
    finally:
        await a.stop()


async def test_renewals_keep_the_trust_and_it_ends_at_the_last_renewal_plus_ttl_less_the_margin(
    redis: RedisCommands,
) -> None:
    """On the leases' own (virtual) timing: each renewal every ttl/5 extends the trust, and once
    renewals stop the lease is trusted until exactly the last one + ttl - margin, then refused.
    One replica, nobody to take its leases: Redis's real-time expiry plays no part here."""
    prefix, shards = fresh_prefix(), 4
    timing = VirtualTiming()
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, timing=timing)
    await a.start()
    key = ContactKey("ws", "+34600000001")
    try:
        assert a.held == frozenset(range(shards))
        for _ in range(10):  # 10 renewals: twice the ttl, trusted throughout
            assert await asleep(timing) == pytest.approx(a.renew_every)
            await timing.advance(a.renew_every)
            await asleep(timing)  # the tick renewed (Redis) and the loop sleeps again
            assert all(a.owns(s) for s in range(shards))
        last_renewal = timing.monotonic()
        assert a._task is not None
        a._task.cancel()  # renewals stop (a hung loop)
        trusted = TTL - a.margin
        await timing.advance(trusted - 0.01)
        assert all(a.owns(s) for s in range(shards)) and a.fence(key)
        await timing.advance(0.01)
        assert timing.monotonic() == pytest.approx(last_renewal + trusted)
        assert not any(a.owns(s) for s in range(shards))
        with pytest.raises(Unavailable):
            a.fence(key)
    finally:
        await a.stop()


async def test_the_loop_renews_four_times_as_often_while_someone_waits_or_a_shard_drains(
    redis: RedisCommands,
) -> None:
    """After a tick, the next renewal is due in ``renew_every / 4`` while someone waits for a tick
    or a shard is being handed over, in ``renew_every`` otherwise: a start or a handover settles
    sooner, and no lease's trust lapses between renewals meanwhile. On the leases' own (virtual)
    timing, one replica: the other member is a name in the membership with no process behind it,
    so nobody takes a's leases, and the long ttl keeps Redis's real-time expiry out of the way."""
    prefix, shards, ttl = fresh_prefix(), 16, 60.0
    timing = VirtualTiming()
    drained: list[int] = []
    release = asyncio.Event()

    async def drain(shard: int) -> None:
        drained.append(shard)
        await release.wait()

    a = ShardLeases(redis, prefix, "a", shards, ttl, drain=drain, timing=timing)
    quick = a.renew_every / 4
    await a.start()
    try:
        assert a.held == frozenset(range(shards))
        assert await asleep(timing) == pytest.approx(a.renew_every)  # idle
        await timing.advance(a.renew_every)
        assert await asleep(timing) == pytest.approx(a.renew_every)  # still idle after a tick

        waiter = asyncio.create_task(a.wait_tick(ttl * 10))  # its timeout sleeps on the timing too
        await until(lambda: timing.sleeping == 2, 10, "the waiter waiting")
        await timing.advance(a.renew_every)
        await until(lambda: waiter.done() and timing.sleeping == 1, 10, "the tick answering the waiter")
        assert timing.next_due() == pytest.approx(quick)  # someone waited: the next tick comes sooner
        await timing.advance(quick)
        assert await asleep(timing) == pytest.approx(a.renew_every)  # nobody waits any more

        moving = {s for s in range(shards) if rendezvous_owner(s, ["a", "ghost"]) == "ghost"}
        assert moving and moving != set(range(shards))
        await redis.zadd(shard_keys_prefix(prefix) + "members", {"ghost": float("inf")})
        await timing.advance(a.renew_every)  # the tick that sees the ghost starts the handovers
        assert await asleep(timing) == pytest.approx(quick)
        await until(lambda: set(drained) == moving, 10, "each moving shard draining")
        assert not any(a.owns(s) for s in moving)
        await timing.advance(quick)  # still draining: still the quick pace
        assert await asleep(timing) == pytest.approx(quick)
        assert a.held == frozenset(range(shards))  # the draining leases were renewed too

        release.set()
        await until(lambda: not a._handovers, 10, "the handovers releasing their leases")
        await timing.advance(quick)  # the sleep began while draining; the next one is idle again
        assert await asleep(timing) == pytest.approx(a.renew_every)
        assert a.held == frozenset(range(shards)) - moving
    finally:
        release.set()
        await a.stop()


async def test_a_shard_being_handed_over_takes_no_new_turns_and_is_drained_once(
    redis: RedisCommands,
) -> None:
    """While its queued turns finish (``drain``) a moving shard is still leased here, yet not owned:
    no new turn starts on it, and later ticks do not start a second handover of it."""
    prefix, shards = fresh_prefix(), 16
    drained: list[int] = []
    release = asyncio.Event()

    async def drain(shard: int) -> None:
        drained.append(shard)
        await release.wait()

    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, drain=drain)
    await a.start()
    b = ShardLeases(redis, prefix, "b-" + uuid.uuid4().hex[:6], shards, TTL)
    try:
        await b.start(settle_seconds=0)  # joins; its shards are a's until a releases them
        await until(lambda: bool(drained), TTL * 3, "a handing shards over to b")
        moving = a.held - a.desired
        assert moving and set(drained) == moving
        assert not any(a.owns(s) for s in moving)
        assert not (moving & b.held)  # not released yet: b cannot have them
        for _ in range(3):
            await a.wait_tick(TTL)
        assert sorted(drained) == sorted(moving), "a shard was handed over twice"
        handovers = list(a._handovers.values())
        assert len(handovers) == len(moving)
        release.set()
        await asyncio.wait(handovers)
        assert [h.exception() for h in handovers] == [None] * len(handovers)
        # Each handover released its lease in Redis before it ended (not left to expire).
        in_redis = await holders(redis, prefix, shards)
        assert not any(in_redis[s] == a.replica_id for s in moving), in_redis
        await until(lambda: a.settled and b.settled, TTL * 4, "b holding what it should")
        assert moving <= b.held and not (moving & a.held)
    finally:
        release.set()
        await asyncio.gather(a.stop(), b.stop())


async def test_a_drain_that_never_ends_is_cut_off_and_the_shard_handed_over(redis: RedisCommands) -> None:
    """A shard whose queued turns never finish (a hung drain) is released after ``drain_timeout``:
    the new owner gets it, instead of the shard staying with a replica that no longer wants it."""
    prefix, shards = fresh_prefix(), 16
    drained: list[int] = []

    async def drain(shard: int) -> None:
        drained.append(shard)
        await asyncio.Event().wait()  # never finishes

    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, drain=drain, drain_timeout=0.2)
    await a.start()
    b = ShardLeases(redis, prefix, "b-" + uuid.uuid4().hex[:6], shards, TTL)
    try:
        await b.start(settle_seconds=0)
        await until(lambda: bool(drained), TTL * 3, "a handing shards over to b")
        await until(lambda: a.settled and b.settled, TTL * 6, "b holding the shards whose drain hung")
        assert set(drained) <= b.held and not (set(drained) & a.held)
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_stop_during_a_handover_releases_every_lease_and_leaves(redis: RedisCommands) -> None:
    """Stopped while a shard's drain still blocks, a replica cancels the handover and still
    releases all it holds (the moving shards and those it keeps) and leaves the membership, so the
    others take its shards at once instead of after the ttl; ``stop`` itself ends normally."""
    prefix, shards = fresh_prefix(), 16
    drained: list[int] = []

    async def drain(shard: int) -> None:
        drained.append(shard)
        await asyncio.Event().wait()  # never finishes: only the cancel at stop ends it

    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, drain=drain)
    await a.start()
    b = ShardLeases(redis, prefix, "b-" + uuid.uuid4().hex[:6], shards, TTL)
    try:
        await b.start(settle_seconds=0)
        await until(lambda: bool(drained), TTL * 3, "a handing shards over to b")
        kept = a.held - set(drained)
        assert kept, "a keeps some shards (rendezvous hashing over two replicas)"
        stopping = asyncio.create_task(a.stop())
        await asyncio.wait([stopping])
        assert not stopping.cancelled(), "a cancelled handover's CancelledError escaped stop"
        assert stopping.exception() is None
        assert a.replica_id not in await holders(redis, prefix, shards), "a lease was left to expire"
        members = await redis.zrange(shard_keys_prefix(prefix) + "members", 0, -1)
        assert a.replica_id.encode() not in members
        await until(lambda: b.held == frozenset(range(shards)), TTL * 2, "b taking every shard")
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_stop_during_an_acquisition_releases_the_lease_redis_granted(redis: RedisCommands) -> None:
    """A tick cancelled by ``stop`` after Redis ran the acquisition but before its answer came back:
    the lease is ours in Redis though the replica never recorded it; stop releases it as well."""
    prefix, shards = fresh_prefix(), 8
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL)
    await a.start()
    granted = asyncio.Event()
    acquire = a._acquire

    async def answer_never_arrives(**arguments: Any) -> Any:
        await acquire(**arguments)
        granted.set()
        await asyncio.Event().wait()  # the reply is still on its way when stop cancels the tick

    try:
        assert a.held == frozenset(range(shards))
        a._acquire = answer_never_arrives
        await redis.delete(shard_lease_key(prefix, 5))  # lost: the next tick takes it back
        await until(granted.is_set, TTL * 3, "the acquisition ran in Redis")
        assert 5 not in a.held
        assert (await holders(redis, prefix, shards))[5] == a.replica_id
    finally:
        await a.stop()
    assert await holders(redis, prefix, shards) == [None] * shards, "a granted lease was left to expire"


async def test_a_replica_is_told_who_is_live_whenever_the_membership_changes(redis: RedisCommands) -> None:
    """``on_members`` gets the live replicas, so the router fails the forwards pending to one that
    left at once instead of letting them wait for the ask timeout."""
    prefix, shards = fresh_prefix(), 8
    seen: list[frozenset[str]] = []
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, on_members=seen.append)
    b = ShardLeases(redis, prefix, "b-" + uuid.uuid4().hex[:6], shards, TTL)
    try:
        await a.start()
        assert seen == [frozenset({a.replica_id})]
        await b.start(settle_seconds=0)
        both = frozenset({a.replica_id, b.replica_id})
        await until(lambda: seen[-1] == both, TTL * 3, "a told that b joined")
        await b.stop()
        await until(lambda: seen[-1] == frozenset({a.replica_id}), TTL * 3, "a told that b left")
        assert seen == [frozenset({a.replica_id}), both, frozenset({a.replica_id})]  # once per change
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_replica_cut_off_from_redis_drops_and_reports_its_leases_then_takes_them_back(
    services: ServiceURLs,
) -> None:
    """A partition between one replica and Redis (nothing answers, nothing errors): its hung tick
    is cut off, every lease it can no longer renew is dropped and reported lost (``on_lost``
    retires the shard's actors) while Redis is still unreachable; once it is reachable again the
    replica takes the shards back. Standalone Redis only: a cluster client would reach the nodes
    it discovers directly, around the gate."""
    address = urlsplit(services.redis_url)
    assert address.hostname is not None and address.port is not None
    gate = await TcpGate(address.hostname, address.port).start()
    cut_off = redis_client(urlunsplit(address._replace(netloc=f"127.0.0.1:{gate.port}")))
    prefix, shards = fresh_prefix(), 8
    lost: list[int] = []
    a = ShardLeases(cut_off, prefix, "a-" + uuid.uuid4().hex[:6], shards, TTL, on_lost=lost.append)
    try:
        await a.start()
        assert a.held == frozenset(range(shards))
        gate.cut()
        waiting = asyncio.create_task(a.wait_tick(TTL / 10))  # no tick can come: it gives up, quietly
        await until(waiting.done, 30, "wait_tick giving up while nothing ticks")
        assert waiting.exception() is None
        await until(lambda: len(lost) >= shards, TTL * 4, "every lease dropped while Redis is unreachable")
        assert set(lost) == set(range(shards)) and len(lost) == shards
        assert a.held == frozenset() and not any(a.owns(s) for s in range(shards))
        gate.heal()
        await until(lambda: a.held == frozenset(range(shards)) and a.settled, TTL * 4, "leases taken back")
        assert len(lost) == shards
    finally:
        gate.heal()
        await a.stop()
        await cut_off.aclose()
        await gate.stop()


async def test_a_replica_cut_off_from_redis_still_stops(services: ServiceURLs) -> None:
    """Stopping while Redis does not answer (a partition) ends: the release at stop is bounded, and
    the leases are left to expire (the others take them after the ttl)."""
    address = urlsplit(services.redis_url)
    assert address.hostname is not None and address.port is not None
    gate = await TcpGate(address.hostname, address.port).start()
    cut_off = redis_client(urlunsplit(address._replace(netloc=f"127.0.0.1:{gate.port}")))
    a = ShardLeases(cut_off, fresh_prefix(), "a-" + uuid.uuid4().hex[:6], 4, TTL)
    try:
        await a.start()
        gate.cut()
        stopping = asyncio.create_task(a.stop())
        await until(stopping.done, 30, "stop returning while Redis is unreachable")
        assert stopping.exception() is None and a.held == frozenset()
    finally:
        gate.heal()
        await a.stop()
        await cut_off.aclose()
        await gate.stop()


def test_a_replica_id_with_a_slash_is_refused(redis: RedisCommands) -> None:
    """The lease token is ``replica/epoch``: an id with '/' would make its owner unreadable."""
    with pytest.raises(ValueError, match="a replica id cannot contain '/'"):
        ShardLeases(redis, fresh_prefix(), "a/1")


async def test_stop_before_start_does_nothing(redis: RedisCommands) -> None:
    """A runtime whose start failed early still stops its leases: nothing held, nothing to cancel."""
    prefix = fresh_prefix()
    a = ShardLeases(redis, prefix, "a-" + uuid.uuid4().hex[:6], 4, TTL)
    await a.stop()
    assert a.held == frozenset() and await holders(redis, prefix, 4) == [None] * 4


@asynccontextmanager
async def runtimes(fast_settings: Settings, count: int) -> AsyncIterator[list[Runtime]]:
    """``count`` runtimes on one database and Redis (replicas in one event loop), stopped after."""
    started: list[Runtime] = []
    try:
        for n in range(count):
            started.append(await start_replica(fast_settings, n))
        yield started
    finally:
        for runtime in started:
            await runtime.stop()


async def start_replica(fast_settings: Settings, n: int) -> Runtime:
    settings = fast_settings.model_copy(
        update={"replica_id": f"replica{n}-{uuid.uuid4().hex[:6]}", "lease_ttl_seconds": TTL}
    )
    runtime = Runtime(settings)
    await runtime.start()
    return runtime


def leases_of(runtime: Runtime) -> ShardLeases:
    assert runtime.actors is not None
    return runtime.actors.leases


def contacts_on(runtime: Runtime, count: int) -> Iterator[ContactKey]:
    """Contacts whose shard ``runtime`` holds."""
    leases = leases_of(runtime)
    keys = (ContactKey(WORKSPACE, f"+3461{n:07d}") for n in range(100_000))
    return itertools.islice((k for k in keys if leases.shard_of(k) in leases.held), count)


async def settled(replicas: list[Runtime]) -> None:
    await until(
        lambda: all(leases_of(r).settled and len(leases_of(r).live) == len(replicas) for r in replicas),
        TTL * 4,
        "replicas settled",
    )


async def test_fenced_write_refused_for_a_stale_epoch(runtime: Runtime, api_key: str) -> None:
    assert runtime.actors is not None
    key = ContactKey(WORKSPACE, "+34600000001")
    first = await runtime.actors.ask(key, inbound("hello"))
    epoch = leases_of(runtime).fence(key)
    assert first.contact["lease_epoch"] == epoch
    # A newer owner (a higher epoch) commits the contact...
    newer = {**first.contact, "version": first.contact["version"] + 1, "lease_epoch": epoch + 1}
    assert await runtime.contacts.compare_and_set(newer, first.contact["version"])
    # ...so a write under the old epoch is refused even at the right version,
    stale = {**newer, "version": newer["version"] + 1, "lease_epoch": epoch, "name": "stale"}
    assert not await runtime.contacts.compare_and_set(stale, newer["version"])
    # ...and so is every turn of the replica still holding the old epoch (it reloads, is refused again).
    with pytest.raises(Conflict):
        await runtime.actors.ask(key, inbound("again"))
    stored = await runtime.contacts.load(key)
    assert stored is not None and stored["version"] == newer["version"] and stored["lease_epoch"] == epoch + 1


async def test_a_replica_stalled_past_its_leases_takes_them_back_and_serves(fast_settings: Settings) -> None:
    """A long pause (GC, CPU starvation) lets every lease expire; the replica must not stay stuck."""
    async with runtimes(fast_settings, 1) as (one,):
        await make_workspace(one)
        assert one.actors is not None
        leases = leases_of(one)
        key = ContactKey(WORKSPACE, "+34600000077")
        first = await one.actors.ask(key, inbound("before the stall"))
        epoch_before = leases.fence(key)
        time.sleep(TTL + 0.5)  # noqa: ASYNC251 - blocks the whole event loop, as a stalled process would
        with pytest.raises(Unavailable):
            leases.fence(key)  # it no longer trusts what it held ...
        await until(lambda: leases.settled, TTL * 4, "leases taken back after the stall")
        assert leases.fence(key) > epoch_before  # ... and took the shards back under a newer epoch
        after = await one.actors.ask(key, inbound("after the stall"))
        assert after.contact["version"] == first.contact["version"] + 1
        assert after.contact["lease_epoch"] == leases.fence(key)


async def test_ask_is_forwarded_to_the_owner(fast_settings: Settings) -> None:
    async with runtimes(fast_settings, 2) as (one, two):
        await make_workspace(one)
        await settled([one, two])
        assert one.actors is not None and two.actors is not None
        key = next(contacts_on(two, 1))
        first = inbound("hi from one")
        result = await one.actors.ask(key, first)
        assert result.changed and result.contact["version"] == 1
        assert result.contact["last_inbound_at"] is not None and result.contact["last_inbound_at"].tzinfo
        stored = await one.contacts.load(key)
        assert stored is not None and stored["lease_epoch"] == leases_of(two).fence(key)
        assert one.actors.forwarded == 1 and one.actors.active_count == 0
        assert two.actors.received == 1 and two.actors.active_count == 1
        # The same event forwarded again (a provider redelivering to this replica): a duplicate,
        # answered across the wire with the owner's contact.
        again = await one.actors.ask(key, first)
        assert again.duplicate and not again.changed and again.contact["version"] == 1
        # A domain error comes back as the same class and message.
        with pytest.raises(NotFound, match="run run_missing not found"):
            await one.actors.ask(key, StopRun("evt_stop", "run_missing"))
        # A tell (nobody waits) still runs on the owner; its future resolves too.
        told = await one.actors.tell(key, inbound("told"))
        assert told.contact["version"] == 2


async def test_handover_when_a_replica_joins(fast_settings: Settings) -> None:
    async with runtimes(fast_settings, 1) as (one,):
        await make_workspace(one)
        assert one.actors is not None
        assert leases_of(one).held == frozenset(range(fast_settings.shard_count))
        keys = [ContactKey(WORKSPACE, f"+3462{n:07d}") for n in range(40)]
        await asyncio.gather(*(one.actors.ask(k, inbound("before")) for k in keys))
        assert one.actors.active_count == len(keys)
        two = await start_replica(fast_settings, 2)
        try:
            await settled([one, two])
            assert two.actors is not None
            moved = [k for k in keys if leases_of(two).shard_of(k) in leases_of(two).held]
            assert moved and len(moved) < len(keys)
            # The moved contacts' actors were passivated on the old owner once their turns ended.
            assert one.actors.active_count == len(keys) - len(moved)
            results = await asyncio.gather(*(one.actors.ask(k, inbound("after")) for k in keys))
            assert all(r.contact["version"] == 2 for r in results)
            assert one.actors.forwarded == len(moved)
            for k in moved:
                stored = await two.contacts.load(k)
                assert stored is not None and stored["lease_epoch"] == leases_of(two).fence(k)
            leaving = leases_of(two).replica_id
        finally:
            await two.stop()
        # Stopping releases its leases in Redis at once (no waiting for them to expire).
        assert leaving not in await holders(one.redis, one.prefix, fast_settings.shard_count)
        await until(
            lambda: leases_of(one).held == frozenset(range(fast_settings.shard_count)), TTL * 3, "takeback"
        )


def test_events_results_and_errors_cross_the_wire_unchanged() -> None:
    """What a forward carries: BSON, not pickle; tz-aware datetimes and tuples come back as such."""
    at = datetime(2026, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    events = [
        InboundMessage("wamid.1", at, text="hola", button_id=None, name="Ana", kind="text"),
        TagContact("evt_1", add=("vip", "spring"), remove=("cold",)),
        SetVariables("evt_2", {"age": 31, "when": at}, links={"age": {"klaviyo": "age"}}),
        ExternalSyncResult("evt_3", "sync_1", ok=False, error="timeout", retry_at=at),
        StopRun("evt_4", "run_1"),
    ]
    for event in events:
        assert decode_event(unpack(pack(encode_event(event)))) == event
    contact: ContactDoc = {"_id": "ws:+34", "workspace_id": "ws", "version": 3, "updated_at": at}
    result = TurnResult(contact, run={"id": "run_1"}, changed=True)
    assert decode_result(unpack(pack(encode_result(result)))) == result
    flow_error = decode_error(unpack(pack(encode_error(InvalidFlow("bad node", node_id="n1")))))
    assert type(flow_error) is InvalidFlow and flow_error.message == "bad node" and flow_error.node_id == "n1"
    assert flow_error.code == "INVALID_FLOW" and str(flow_error) == "bad node"
    missing = decode_error(unpack(pack(encode_error(NotFound("run run_1 not found")))))
    assert type(missing) is NotFound and missing.message == "run run_1 not found"
    unexpected = decode_error(unpack(pack(encode_error(ValueError("boom")))))
    assert type(unexpected) is RemoteTurnError and "ValueError: boom" in str(unexpected)
