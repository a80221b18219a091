"""Actors spread over replicas: a contact's turns run only on the replica holding its shard lease.

``ShardedActors`` has the surface of ``ActorSystem`` (``tell``, ``ask``, ``active_count``,
``passivate_idle``, ``start``, ``stop``). An event for a shard held here goes to the shard's local
``ActorSystem`` (``local_shard.py``); any other is forwarded to the lease holder through Redis
lists (one inbox and one reply list per replica, pushed in batches: ``shard_mailboxes.py``; what
they carry: ``shard_wire.py``) and its future resolves with the owner's reply.
Forwarding is at most once, which is enough: inbound messages are stored before they are told
and recovery re-tells those never applied, timers are re-armed from the store, and a caller
waiting on a forward gets ``Unavailable`` (never a hang) when the owner dies or stays silent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import typing
from typing import Any

from server.actors.contact_actor import ActorDeps
from server.actors.events import Event, TurnResult
from server.actors.leases import ShardLeases
from server.actors.local_shard import LocalShard
from server.actors.shard_mailboxes import ShardMailboxes
from server.actors.shard_wire import (
    decode_error,
    decode_event,
    decode_result,
    encode_error,
    encode_event,
    encode_result,
)
from server.actors.system import sweep_idle
from server.cancellation import cancel_all_and_wait, cancel_and_wait
from server.errors import Unavailable
from server.ids import ContactKey
from server.packing import pack, unpack
from server.redis_clients import RedisCommands

log = logging.getLogger(__name__)

MAX_HOPS = 3  # an event re-forwarded more often than this chases an owner that keeps moving


# --- the router --------------------------------------------------------------------------------


class ShardedActors:
    """Contact actors of the shards this replica leases; events of other shards go to their owner."""

    def __init__(
        self,
        deps: ActorDeps,
        redis: RedisCommands,
        prefix: str,
        replica_id: str,
        shard_count: int = 64,
        lease_ttl_seconds: float = 5.0,
        idle_seconds: float = 60.0,
        ask_timeout_seconds: float = 30.0,
        handover_grace_seconds: float = 10.0,
    ) -> None:
        self.replica_id = replica_id
        self.deps = dataclasses.replace(deps, fence_of=self._fence)
        self.leases = ShardLeases(
            redis,
            prefix,
            replica_id,
            shard_count,
            lease_ttl_seconds,
            drain=self._drain,
            on_lost=self._retire,
            on_members=self._members_changed,
            drain_timeout=handover_grace_seconds + 5,
            timing=deps.timing,
        )
        self._mailboxes = ShardMailboxes(
            redis,
            prefix,
            replica_id,
            on_request=self._accept,
            on_reply=self._answered,
            on_send_failed=self._send_failed,
            timing=deps.timing,
        )
        self._idle_seconds = idle_seconds
        self._ask_timeout = ask_timeout_seconds
        self._handover_grace = handover_grace_seconds
        # Long enough for a dead replica's leases to expire and be taken over.
        self._route_wait = lease_ttl_seconds * 2 + 2
        self._shards: dict[int, LocalShard] = {}
        self._pending: dict[str, tuple[asyncio.Future[TurnResult], str]] = {}
        self._background: set[asyncio.Task[Any]] = set()  # routing: cancelled on stop
        self._routed: set[asyncio.Future[TurnResult]] = set()  # their callers' futures
        self._retiring: set[asyncio.Task[Any]] = set()  # systems of lost shards: finished on stop
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self.forwarded = 0  # events sent to another replica (metrics, tests)
        self.received = 0  # events run here for another replica

    # --- the ActorSystem surface ---------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return sum(local.system.active_count for local in self._shards.values())

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        """Queue ``event`` for the contact wherever its actor lives; resolves once committed."""
        return self._tell(key, event, hops=0)

    async def ask(self, key: ContactKey, event: Event) -> TurnResult:
        return await self.tell(key, event)

    def passivate_idle(self, idle_seconds: float) -> int:
        return sum(local.system.passivate_idle(idle_seconds) for local in list(self._shards.values()))

    async def start(self) -> None:
        """Listen for forwarded events, then join and wait (bounded) until our shards are held."""
        self._mailboxes.start()
        self._sweeper = asyncio.create_task(
            sweep_idle(self, self._idle_seconds, self.deps.timing), name="actor-sweeper"
        )
        await self.leases.start()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Finish queued turns (and reply to forwarded ones), then release every lease (SIGTERM)."""
        self._stopping = True
        await self._mailboxes.close_inbox()
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        shards = list(self._shards.values())
        self._shards.clear()
        await asyncio.gather(*(local.stop(grace_seconds) for local in shards), *self._retiring)
        await cancel_all_and_wait(self._background)
        for future in list(self._routed):  # a task cancelled before its first step set nothing
            if not future.done():
                future.set_exception(Unavailable("the server is shutting down; retry shortly"))
        self._fail_pending(lambda _: True, "this server is shutting down; retry shortly")
        await self._mailboxes.stop(flush_seconds=2)  # the replies of the turns just finished go out
        await self.leases.stop()

    # --- routing -------------------------------------------------------------------------------

    def _tell(self, key: ContactKey, event: Event, hops: int) -> asyncio.Future[TurnResult]:
        if self._stopping:
            raise Unavailable("the server is shutting down; retry shortly")
        shard = self.leases.shard_of(key)
        if self.leases.owns(shard):
            return self._local(shard).tell(key, event)
        future: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
        self._routed.add(future)
        future.add_done_callback(self._routed.discard)
        self._spawn(self._route(key, event, shard, hops, future), f"route:{key.doc_id}")
        return future

    async def _route(
        self, key: ContactKey, event: Event, shard: int, hops: int, future: asyncio.Future[TurnResult]
    ) -> None:
        try:
            result = await self._deliver(key, event, shard, hops)
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(Unavailable("the server is shutting down; retry shortly"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    async def _deliver(self, key: ContactKey, event: Event, shard: int, hops: int) -> TurnResult:
        """Run here once the shard is ours, or forward to its holder; wait briefly while it moves."""
        timing = self.deps.timing
        deadline = timing.monotonic() + self._route_wait
        while True:
            if self._stopping:
                raise Unavailable("the server is shutting down; retry shortly")
            if self.leases.owns(shard):
                return await self._local(shard).tell(key, event)
            owner = self.leases.owner_of(shard)
            if owner is not None and owner != self.replica_id and owner in self.leases.live:
                if hops >= MAX_HOPS:
                    raise Unavailable(f"contact {key.doc_id} is moving between servers; retry shortly")
                return await self._forward(owner, key, event, hops)
            remaining = deadline - timing.monotonic()
            if remaining <= 0:
                raise Unavailable(f"no server holds contact {key.doc_id} right now; retry shortly")
            await self.leases.wait_tick(min(remaining, 1.0))

    async def _forward(self, owner: str, key: ContactKey, event: Event, hops: int) -> TurnResult:
        request_id = os.urandom(12).hex()
        future: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, owner)
        payload = pack(
            {
                "id": request_id,
                "from": self.replica_id,
                "hops": hops + 1,
                # Wall time: the owner compares it with its own clock (replicas' monotonic clocks differ).
                "expires": self.deps.clock.now().timestamp() + self._ask_timeout,
                "workspace_id": key.workspace_id,
                "contact": key.local_id,
                "event": encode_event(event),
            }
        )
        self._mailboxes.send(self._mailboxes.inbox_of(owner), payload, request_id)
        self.forwarded += 1
        try:
            async with asyncio.timeout(self._ask_timeout):  # waits on another process: real time
                return await future
        except TimeoutError:
            raise Unavailable(
                f"the server owning contact {key.doc_id} did not answer in {self._ask_timeout:.0f}s; retry"
            ) from None
        finally:
            self._pending.pop(request_id, None)

    def _fail_pending(self, which: typing.Callable[[str], bool], message: str) -> None:
        for request_id, (future, owner) in list(self._pending.items()):
            if which(owner):
                self._pending.pop(request_id, None)
                if not future.done():
                    future.set_exception(Unavailable(message))

    def _send_failed(self, request_id: str, exc: Exception) -> None:
        """A forward that never reached Redis will never be answered: its caller hears it now."""
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(Unavailable(f"could not reach the contact's server: {exc}"))

    def _members_changed(self, live: frozenset[str]) -> None:
        """Forwards to a replica that left will never be answered: fail them now, not at timeout.

        Safe even if the replica is only stalled: it heartbeats before it renews, so its own lease
        check stopped trusting its leases (ttl - margin after the renewal) before its membership
        expired here, and its turns of those events are refused at the fence (only a write already
        past that check can still land: the same race as any timeout, which callers settle by reading).
        """
        self._fail_pending(lambda owner: owner not in live, "the server owning the contact stopped; retry")

    # --- the local shards ----------------------------------------------------------------------

    def _local(self, shard: int) -> LocalShard:
        local = self._shards.get(shard)
        if local is None:
            local = self._shards[shard] = LocalShard(self.deps, self._idle_seconds)
        return local

    def _fence(self, key: ContactKey) -> int:
        return self.leases.fence(key)

    async def _drain(self, shard: int) -> None:
        """Handover: the shard's queued turns finish and its actors are dropped before the release."""
        local = self._shards.pop(shard, None)
        if local is not None:
            await local.stop(self._handover_grace)

    def _retire(self, shard: int) -> None:
        """The lease is gone: queued turns fail at their fence check; cached documents are dropped."""
        local = self._shards.pop(shard, None)
        if local is not None:
            task = asyncio.create_task(local.stop(self._handover_grace), name=f"retire-shard:{shard}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    # --- forwarded events and their replies --------------------------------------------------

    def _accept(self, payload: bytes) -> None:
        """Run a forwarded event here (or pass it on) and answer its sender when the turn ends."""
        try:
            request = unpack(payload)
            # ``phone``: what a replica of the version before identities names the contact by.
            key = ContactKey(request["workspace_id"], request.get("contact") or request["phone"])
            event = decode_event(request["event"])
        except Exception:
            log.exception("dropped an unreadable forwarded event")
            return
        if request["expires"] < self.deps.clock.now().timestamp():
            return  # its sender already answered Unavailable; a retry carries the same event id
        self.received += 1
        try:
            future = self._tell(key, event, request["hops"])
        except Exception as exc:
            self._reply(request, None, exc)
            return
        future.add_done_callback(lambda done: self._reply(request, done, None))

    def _reply(
        self, request: dict[str, Any], done: asyncio.Future[TurnResult] | None, error: BaseException | None
    ) -> None:
        if done is not None:
            error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is None and done is not None:
            answer = {"id": request["id"], "ok": True, "result": encode_result(done.result())}
        else:
            answer = {"id": request["id"], "ok": False, "error": encode_error(error or Exception())}
        try:
            payload = pack(answer)
        except Exception as exc:
            log.exception("could not encode the reply to a forwarded %s", request["event"]["type"])
            payload = pack({"id": request["id"], "ok": False, "error": encode_error(exc)})
        self._mailboxes.send(self._mailboxes.replies_of(request["from"]), payload)

    def _answered(self, payload: bytes) -> None:
        """A reply to one of our forwards resolves its waiting future (unless it gave up already)."""
        try:
            answer = unpack(payload)
            entry = self._pending.pop(answer["id"], None)
            if entry is None or entry[0].done():
                return  # timed out or failed already
            if answer["ok"]:
                entry[0].set_result(decode_result(answer["result"]))
            else:
                entry[0].set_exception(decode_error(answer["error"]))
        except Exception:
            log.exception("dropped an unreadable shard reply")

    # --- tasks ---------------------------------------------------------------------------------

    def _spawn(self, coroutine: typing.Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
