"""Actors spread over replicas: a contact's turns run only on the replica holding its shard lease.

``ShardedActors`` has the surface of ``ActorSystem`` (``tell``, ``ask``, ``active_count``,
``passivate_idle``, ``start``, ``stop``). An event for a shard held here goes to the shard's local
``ActorSystem``; any other is forwarded to the lease holder through Redis lists (one inbox and one
reply list per replica, pushed in batches) and its future resolves with the owner's reply.
Forwarding is at most once, which is enough: inbound messages are stored before they are told
and recovery re-tells those never applied, timers are re-armed from the store, and a caller
waiting on a forward gets ``Unavailable`` (never a hang) when the owner dies or stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import typing
from typing import Any

import bson
from bson.errors import InvalidDocument
from redis.exceptions import RedisError

from server.actors.contact_actor import ActorDeps
from server.actors.events import Event, TurnResult
from server.actors.leases import ShardLeases
from server.actors.system import ActorSystem, sweep_idle
from server.errors import InvalidFlow, KonvoError, Unavailable
from server.ids import ContactKey
from server.packing import pack, unpack
from server.redis_clients import RedisCommands

log = logging.getLogger(__name__)

MAX_HOPS = 3  # an event re-forwarded more often than this chases an owner that keeps moving
MAILBOX_TTL_MS = 60_000  # inboxes and reply lists of a dead replica disappear on their own
BATCH = 256

_EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}


class RemoteTurnError(RuntimeError):
    """An unexpected (non-domain) failure of a turn on the owning replica; masked like a local one."""


# --- wire format: BSON (contact documents hold datetimes; no pickle across processes) ----------


def encode_event(event: Event) -> dict[str, Any]:
    return {
        "type": type(event).__name__,
        "fields": {f.name: getattr(event, f.name) for f in dataclasses.fields(event)},
    }


def decode_event(document: dict[str, Any]) -> Event:
    cls = _EVENT_TYPES.get(document["type"])
    if cls is None:
        raise ValueError(f"unknown event type {document['type']!r}")
    values = dict(document["fields"])
    for f in dataclasses.fields(cls):
        if str(f.type).startswith("tuple") and isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return typing.cast(Event, cls(**values))


def encode_result(result: TurnResult) -> dict[str, Any]:
    return {
        "contact": result.contact,
        "run": result.run,
        "duplicate": result.duplicate,
        "changed": result.changed,
    }


def decode_result(document: dict[str, Any]) -> TurnResult:
    return TurnResult(
        document["contact"],
        run=document.get("run"),
        duplicate=document["duplicate"],
        changed=document["changed"],
    )


def _error_classes() -> dict[str, type[KonvoError]]:
    found: dict[str, type[KonvoError]] = {}
    pending: list[type[KonvoError]] = [KonvoError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, KonvoError):
        details = exc.details
        try:
            bson.encode({"d": details})
        except (InvalidDocument, TypeError, OverflowError):
            details = {}
        return {"class": type(exc).__name__, "message": exc.message, "details": details}
    if isinstance(exc, asyncio.CancelledError):
        return {"class": "Unavailable", "message": "the owning server stopped the turn; retry", "details": {}}
    return {"class": None, "message": f"{type(exc).__name__}: {exc}", "details": {}}


def decode_error(document: dict[str, Any]) -> Exception:
    """The same ``KonvoError`` class and message as raised on the owner (the API's code is kept)."""
    cls = _error_classes().get(document.get("class") or "")
    message = document["message"]
    if cls is None:
        return RemoteTurnError(message)
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    error.details = dict(document.get("details") or {})
    if isinstance(error, InvalidFlow):
        error.node_id = typing.cast(str | None, error.details.get("nodeId"))
    return error


class _LocalShard:
    """A shard's actors in this process, and the futures of the turns queued on them.

    A shard's system is stopped on handover, lease loss and shutdown; whatever it did not run or
    cancelled after its grace, the callers (often another replica waiting on a reply) get
    ``Unavailable``, never a future that hangs.
    """

    def __init__(self, deps: ActorDeps, idle_seconds: float) -> None:
        self.system = ActorSystem(deps, idle_seconds=idle_seconds)  # swept by ``ShardedActors``
        self._queued: set[asyncio.Future[TurnResult]] = set()

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        future = self.system.tell(key, event)
        self._queued.add(future)
        future.add_done_callback(self._queued.discard)
        return future

    async def stop(self, grace_seconds: float) -> None:
        try:
            await self.system.stop(grace_seconds)
        finally:
            for future in list(self._queued):
                if not future.done():
                    future.set_exception(Unavailable("the contact's turn was stopped on this server; retry"))


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
        )
        self._redis = redis
        self._prefix = prefix
        self._inbox = self._inbox_of(replica_id)
        self._replies = self._replies_of(replica_id)
        self._idle_seconds = idle_seconds
        self._ask_timeout = ask_timeout_seconds
        self._handover_grace = handover_grace_seconds
        # Long enough for a dead replica's leases to expire and be taken over.
        self._route_wait = lease_ttl_seconds * 2 + 2
        self._shards: dict[int, _LocalShard] = {}
        self._pending: dict[str, tuple[asyncio.Future[TurnResult], str]] = {}
        self._outgoing: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue()
        self._background: set[asyncio.Task[Any]] = set()  # routing: cancelled on stop
        self._routed: set[asyncio.Future[TurnResult]] = set()  # their callers' futures
        self._retiring: set[asyncio.Task[Any]] = set()  # systems of lost shards: finished on stop
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.forwarded = 0  # events sent to another replica (metrics, tests)
        self.received = 0  # events run here for another replica

    def _inbox_of(self, replica_id: str) -> str:
        return self._prefix + "shard-inbox:" + replica_id

    def _replies_of(self, replica_id: str) -> str:
        return self._prefix + "shard-replies:" + replica_id

    # --- the ActorSystem surface ---------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return sum(local.system.active_count for local in self._shards.values())

    def tell(self, key: ContactKey, event: Event) -> asyncio.Future[TurnResult]:
        """Queue ``event`` for the contact wherever its actor lives; resolves once committed."""
        return self._tell(key, event, hops=0)

    async def ask(self, key: ContactKey, event: Event) -> TurnResult:
        return await self.tell(key, event)

    def passivate_idle(self, older_than: float) -> int:
        return sum(local.system.passivate_idle(older_than) for local in list(self._shards.values()))

    async def start(self) -> None:
        """Listen for forwarded events, then join and wait (bounded) until our shards are held."""
        self._loops["sender"] = asyncio.create_task(self._send_loop(), name="shards-sender")
        self._loops["inbox"] = asyncio.create_task(
            self._listen(self._inbox, self._accept, "the shard inbox"), name="shards-inbox"
        )
        self._loops["replies"] = asyncio.create_task(
            self._listen(self._replies, self._answered, "shard replies"), name="shards-replies"
        )
        self._loops["sweeper"] = asyncio.create_task(
            sweep_idle(self, self._idle_seconds), name="actor-sweeper"
        )
        await self.leases.start()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Finish queued turns (and reply to forwarded ones), then release every lease (SIGTERM)."""
        self._stopping = True
        await self._cancel_loop("inbox")
        await self._cancel_loop("sweeper")
        shards = list(self._shards.values())
        self._shards.clear()
        await asyncio.gather(*(local.stop(grace_seconds) for local in shards), *self._retiring)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for future in list(self._routed):  # a task cancelled before its first step set nothing
            if not future.done():
                future.set_exception(Unavailable("the server is shutting down; retry shortly"))
        self._fail_pending(lambda _: True, "this server is shutting down; retry shortly")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._outgoing.join()  # the replies of the turns just finished
        await self._cancel_loop("sender")
        await self._cancel_loop("replies")
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
        deadline = time.monotonic() + self._route_wait
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
            remaining = deadline - time.monotonic()
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
                "expires": time.time() + self._ask_timeout,
                "workspace_id": key.workspace_id,
                "contact": key.local_id,
                "event": encode_event(event),
            }
        )
        self._outgoing.put_nowait((self._inbox_of(owner), payload, request_id))
        self.forwarded += 1
        try:
            async with asyncio.timeout(self._ask_timeout):
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

    def _members_changed(self, live: frozenset[str]) -> None:
        """Forwards to a replica that left will never be answered: fail them now, not at timeout.

        Safe even if the replica is only stalled: it heartbeats before it renews, so its own lease
        check stopped trusting its leases (ttl - margin after the renewal) before its membership
        expired here, and its turns of those events are refused at the fence (only a write already
        past that check can still land: the same race as any timeout, which callers settle by reading).
        """
        self._fail_pending(lambda owner: owner not in live, "the server owning the contact stopped; retry")

    # --- the local shards ----------------------------------------------------------------------

    def _local(self, shard: int) -> _LocalShard:
        local = self._shards.get(shard)
        if local is None:
            local = self._shards[shard] = _LocalShard(self.deps, self._idle_seconds)
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

    # --- Redis transport -----------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Push queued requests and replies in batches: one pipeline per wake-up, order kept per list."""
        while True:
            batch = [await self._outgoing.get()]
            while not self._outgoing.empty() and len(batch) < BATCH:
                batch.append(self._outgoing.get_nowait())
            lists: dict[str, list[bytes]] = {}
            for key, payload, _ in batch:
                lists.setdefault(key, []).append(payload)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, payloads in lists.items():
                        pipe.rpush(key, *payloads)
                        pipe.pexpire(key, MAILBOX_TTL_MS)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("forwarding %d shard messages failed: %s", len(batch), exc)
                for _, _, request_id in batch:
                    entry = self._pending.pop(request_id, None) if request_id else None
                    if entry is not None and not entry[0].done():
                        entry[0].set_exception(Unavailable(f"could not reach the contact's server: {exc}"))
            finally:
                for _ in batch:
                    self._outgoing.task_done()

    async def _take(self, key: str) -> list[bytes]:
        """Block up to 1 s for the first message of ``key``, then take what else is there."""
        # redis-py types each command as "awaitable or value" for both of its clients; ours is async.
        got = await self._redis.blpop([key], timeout=1)  # type: ignore[misc]
        if got is None:
            return []
        payloads = [got[1]]
        more = await self._redis.lpop(key, BATCH)  # type: ignore[misc]  # as blpop above
        if more:
            payloads.extend(more)
        return payloads

    async def _listen(self, key: str, handle: typing.Callable[[bytes], None], what: str) -> None:
        """Hand each message pushed to ``key`` to ``handle``, riding out Redis blips."""
        while True:
            try:
                payloads = await self._take(key)
            except (RedisError, OSError) as exc:
                log.warning("reading %s failed: %s", what, exc)
                await asyncio.sleep(0.5)
                continue
            for payload in payloads:
                handle(payload)

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
        if request["expires"] < time.time():
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
        self._outgoing.put_nowait((self._replies_of(request["from"]), payload, None))

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

    async def _cancel_loop(self, name: str) -> None:
        task = self._loops.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
