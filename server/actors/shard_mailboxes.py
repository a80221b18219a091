"""Redis lists that carry forwarded turns between replicas: one inbox and one reply list each.

``ShardedActors`` (``server/actors/shards.py``) forwards an event to the replica holding its
shard by pushing it to that replica's inbox, and the owner pushes the turn's answer to the
sender's reply list. Pushes go out in batches (one pipeline per wake-up, order kept per list),
and the lists of a dead replica expire on their own. Delivery is at most once: a push that fails
is reported to the router (``on_send_failed``), which answers its caller ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from server.cancellation import cancel_and_wait
from server.clock import SystemTiming, Timing
from server.redis_clients import RedisCommands

log = logging.getLogger(__name__)

MAILBOX_TTL_MS = 60_000  # inboxes and reply lists of a dead replica disappear on their own
BATCH = 256


class ShardMailboxes:
    """This replica's inbox and reply list, read in the background, and the sender to every other's."""

    def __init__(
        self,
        redis: RedisCommands,
        prefix: str,
        replica_id: str,
        *,
        on_request: Callable[[bytes], None],
        on_reply: Callable[[bytes], None],
        on_send_failed: Callable[[str, Exception], None],
        timing: Timing | None = None,
    ) -> None:
        self._redis = redis
        self._timing = timing or SystemTiming()  # the pause after a failed read
        self._prefix = prefix
        self._inbox = self.inbox_of(replica_id)
        self._replies = self.replies_of(replica_id)
        self._on_request = on_request
        self._on_reply = on_reply
        self._on_send_failed = on_send_failed
        self._outgoing: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue()
        self._loops: dict[str, asyncio.Task[None]] = {}

    def inbox_of(self, replica_id: str) -> str:
        return self._prefix + "shard-inbox:" + replica_id

    def replies_of(self, replica_id: str) -> str:
        return self._prefix + "shard-replies:" + replica_id

    def send(self, list_key: str, payload: bytes, request_id: str | None = None) -> None:
        """Queue a push; a request names its id so that a failed push fails its waiting caller."""
        self._outgoing.put_nowait((list_key, payload, request_id))

    def start(self) -> None:
        self._loops["sender"] = asyncio.create_task(self._send_loop(), name="shards-sender")
        self._loops["inbox"] = asyncio.create_task(
            self._listen(self._inbox, self._on_request, "the shard inbox"), name="shards-inbox"
        )
        self._loops["replies"] = asyncio.create_task(
            self._listen(self._replies, self._on_reply, "shard replies"), name="shards-replies"
        )

    async def close_inbox(self) -> None:
        """Take no more forwarded events (shutdown); replies are still sent and received."""
        await self._cancel("inbox")

    async def stop(self, flush_seconds: float = 2.0) -> None:
        """Push what is queued (the replies of the turns just finished, bounded), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await self._outgoing.join()
        await self._cancel("sender")
        await self._cancel("replies")
        await self._cancel("inbox")

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
                    if request_id:
                        self._on_send_failed(request_id, exc)
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

    async def _listen(self, key: str, handle: Callable[[bytes], None], what: str) -> None:
        """Hand each message pushed to ``key`` to ``handle``, riding out Redis blips."""
        while True:
            try:
                payloads = await self._take(key)
            except (RedisError, OSError) as exc:
                log.warning("reading %s failed: %s", what, exc)
                await self._timing.sleep(0.5)
                continue
            for payload in payloads:
                handle(payload)

    async def _cancel(self, name: str) -> None:
        await cancel_and_wait(self._loops.pop(name, None))
