"""Change notifications through Redis pub/sub, so subscribers on any server process see them.

One pattern subscription per process receives every topic of this deployment and fans it out
to local subscriber queues; publishing is one PUBLISH per topic. Payloads travel as BSON: every
commit publishes its contact document, and the C encoder costs a fraction of a JSON encoding
that has to walk datetimes in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from server.cancellation import cancel_and_wait
from server.ids import ContactKey
from server.packing import pack, unpack
from server.redis_clients import RedisCommands, subscriber

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000


def contact_topic(key: ContactKey) -> str:
    """A contact's changes, by its stable id (its phone or BSUID may change under a subscriber)."""
    return f"contact:{key.doc_id}"


def run_topic(workspace_id: str) -> str:
    return f"runs:{workspace_id}"


def inbox_topic(workspace_id: str) -> str:
    """Every committed change of a workspace's conversations (``inboxUpdated``)."""
    return f"inbox:{workspace_id}"


def analytics_topic(workspace_id: str, flow_id: str) -> str:
    """A flow's analytics counters changed (``flowAnalyticsUpdated``)."""
    return f"analytics:{workspace_id}:{flow_id}"


class SubscriberOverflow(Exception):
    """A subscriber fell more than ``QUEUE_LIMIT`` events behind; it must resubscribe."""


class RedisPubSub:
    def __init__(self, redis: RedisCommands, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._queues: dict[str, set[asyncio.Queue[Any]]] = defaultdict(set)
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="pubsub-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        await cancel_and_wait(self._listener)
        for queues in self._queues.values():
            for queue in queues:
                queue.put_nowait(None)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        # As a raw command: redis-py 5's asyncio RedisCluster has no ``publish`` method.
        await self._redis.execute_command("PUBLISH", self._prefix + topic, pack(payload))

    async def contact_changed(self, contact: dict[str, Any], run_ids: set[str]) -> None:
        """The contact and each changed run, in one round trip (a pipeline, not a transaction)."""
        workspace_id = contact["workspace_id"]
        await self.publish(contact_topic(ContactKey.of_contact(contact)), contact)
        for run in contact.get("runs", []):
            if run["id"] in run_ids:
                await self.publish(
                    run_topic(workspace_id),
                    {
                        **run,
                        "contact_id": contact["_id"],
                        "phone": contact.get("phone"),
                        "workspace_id": workspace_id,
                    },
                )

    async def flows_counted(self, flows: set[tuple[str, str]]) -> None:
        """News that these (workspace, flow) counters changed; subscribers read the totals."""
        for workspace_id, flow_id in flows:
            await self.publish(analytics_topic(workspace_id, flow_id), {"flow_id": flow_id})

    @property
    def subscriber_count(self) -> int:
        """Local subscriptions registered right now (a gauge: leaving clients must bring it to 0)."""
        return sum(len(queues) for queues in self._queues.values())

    def on(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler`` with every payload of ``topic``, for the life of the process: the
        server's own listeners (not client subscriptions, so not in ``subscriber_count``)."""
        self._handlers[topic].append(handler)

    def subscribe(self, topic: str) -> TopicSubscription:
        """Receive every payload published on ``topic`` from this call on, in order."""
        return TopicSubscription(self, topic)

    def _register(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        self._queues[topic].add(queue)

    def _unregister(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        queues = self._queues.get(topic)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[topic]

    async def _listen(self) -> None:
        while True:
            pubsub = None
            client = self._redis
            try:
                # On a cluster, a plain connection to one node (pub/sub reaches every node).
                client = await subscriber(self._redis)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.psubscribe(self._prefix + "*")
                self._ready.set()
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    self._dispatch(channel[len(self._prefix) :], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pub/sub connection lost; reconnecting")
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not self._redis:
                        await client.aclose()

    def _dispatch(self, topic: str, data: bytes) -> None:
        queues = self._queues.get(topic)
        handlers = self._handlers.get(topic)
        if not queues and not handlers:
            return
        payload = unpack(data)
        for handler in handlers or ():
            try:
                handler(payload)
            except Exception:
                log.exception("pub/sub handler for %s failed", topic)
        for queue in list(queues or ()):
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(SubscriberOverflow(f"subscriber on {topic} fell behind"))


class TopicSubscription:
    """An async iterator over one topic, registered at creation so nothing after it is missed."""

    def __init__(self, hub: RedisPubSub, topic: str) -> None:
        self._hub = hub
        self._topic = topic
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        hub._register(topic, self._queue)

    def __aiter__(self) -> TopicSubscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, SubscriberOverflow):
            raise item
        return item

    def skip_queued(self) -> bool:
        """Drop the payloads queued now, for a reader that re-reads the state on any news (it
        needs one wake-up, not one per message); False when the stream ended meanwhile."""
        while not self._queue.empty():
            if self._queue.get_nowait() is None:
                return False
        return True

    async def aclose(self) -> None:
        self._hub._unregister(self._topic, self._queue)
