"""Change notifications through Redis pub/sub, so subscribers on any server process see them.

One pattern subscription per process receives every topic of this deployment and fans it out
to local subscriber queues. Payloads travel as BSON: every commit publishes its contact document,
and the C encoder costs a fraction of a JSON encoding that has to walk datetimes in Python.

A committed turn is one PUBLISH (issue 19: it was up to four, each packing the whole contact,
one after another): ``turn:<contact id>`` carries the contact once, the ids of the runs it
changed and the flows it counted, and each receiving process fans it out to the local topics
its subscribers read (``contact:``, ``runs:``, ``inbox:``, ``analytics:``), decoding it only
when one of them is listened to here. redis-py refuses PUBLISH in a RedisCluster pipeline, so
one message, not a pipeline of several.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from server.cancellation import cancel_and_wait
from server.clock import SystemTiming, Timing
from server.ids import ContactKey
from server.packing import pack, unpack
from server.redis_clients import RedisCommands, subscriber

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000


TURN_TOPIC = "turn:"


def turn_topic(key: ContactKey) -> str:
    """The wire topic of a contact's committed turns (fanned out locally, never subscribed to)."""
    return f"{TURN_TOPIC}{key.doc_id}"


def contact_topic(key: ContactKey) -> str:
    """A contact's changes, by its stable id (its phone or BSUID may change under a subscriber)."""
    return f"contact:{key.doc_id}"


def run_topic(workspace_id: str) -> str:
    return f"runs:{workspace_id}"


def inbox_topic(workspace_id: str) -> str:
    """Every committed change of a workspace's conversations (``inboxUpdated``)."""
    return f"inbox:{workspace_id}"


ANALYTICS_TOPIC = "analytics:"


def analytics_topic(workspace_id: str, flow_id: str) -> str:
    """A flow's analytics counters changed (``flowAnalyticsUpdated``)."""
    return f"{ANALYTICS_TOPIC}{workspace_id}:{flow_id}"


def in_inbox(contact: Mapping[str, Any]) -> bool:
    """A contact is a conversation of the inbox once a message was exchanged with it."""
    return contact.get("last_message_at") is not None


def turn_news(news: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The local (topic, payload) pairs of one turn's message, in the order subscribers saw them
    when each was a PUBLISH of its own: the contact, each changed run, the conversation, the
    flows counted."""
    contact: dict[str, Any] = news["contact"]
    workspace_id = contact["workspace_id"]
    fanned: list[tuple[str, dict[str, Any]]] = [(contact_topic(ContactKey.of_contact(contact)), contact)]
    changed = set(news.get("runs") or ())
    whose = {"contact_id": contact["_id"], "phone": contact.get("phone"), "workspace_id": workspace_id}
    for run in contact.get("runs", []):
        if run["id"] in changed:
            fanned.append((run_topic(workspace_id), {**run, **whose}))
    if in_inbox(contact):
        fanned.append((inbox_topic(workspace_id), contact))
    for flow_id in news.get("flows") or ():
        fanned.append((analytics_topic(workspace_id, flow_id), {"flow_id": flow_id}))
    return fanned


class SubscriberOverflow(Exception):
    """A subscriber fell more than ``QUEUE_LIMIT`` events behind; it must resubscribe."""


class RedisPubSub:
    def __init__(self, redis: RedisCommands, prefix: str, timing: Timing | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timing = timing or SystemTiming()  # the pause before reconnecting
        self._queues: dict[str, set[asyncio.Queue[Any]]] = defaultdict(set)
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        # Local analytics topics per workspace: whether a turn's message needs decoding at all.
        self._analytics_listened: Counter[str] = Counter()
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

    async def contact_changed(
        self, contact: Mapping[str, Any], run_ids: set[str], flows: set[str] | frozenset[str] = frozenset()
    ) -> None:
        """A committed turn's news, one PUBLISH: the contact (packed once), the runs it changed,
        the flows whose counters it stored (``turn_news`` fans it out where it is received)."""
        news = {"contact": contact, "runs": sorted(run_ids), "flows": sorted(flows)}
        await self.publish(turn_topic(ContactKey.of_contact(contact)), news)

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
        self._count_analytics(topic, 1)

    def subscribe(self, topic: str) -> TopicSubscription:
        """Receive every payload published on ``topic`` from this call on, in order."""
        return TopicSubscription(self, topic)

    def _register(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        self._queues[topic].add(queue)
        self._count_analytics(topic, 1)

    def _unregister(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        queues = self._queues.get(topic)
        if queues is not None and queue in queues:
            queues.discard(queue)
            self._count_analytics(topic, -1)
            if not queues:
                del self._queues[topic]

    def _count_analytics(self, topic: str, change: int) -> None:
        if topic.startswith(ANALYTICS_TOPIC):
            workspace_id = topic[len(ANALYTICS_TOPIC) :].partition(":")[0]
            self._analytics_listened[workspace_id] += change
            if self._analytics_listened[workspace_id] <= 0:
                del self._analytics_listened[workspace_id]

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
                await self._timing.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not self._redis:
                        await client.aclose()

    def _dispatch(self, topic: str, data: bytes) -> None:
        if topic.startswith(TURN_TOPIC):
            self._dispatch_turn(topic[len(TURN_TOPIC) :], data)
            return
        queues = self._queues.get(topic)
        handlers = self._handlers.get(topic)
        if not queues and not handlers:
            return
        self._deliver(topic, unpack(data))

    def _dispatch_turn(self, contact_id: str, data: bytes) -> None:
        """A turn's message, decoded only when a topic it fans out to is listened to here."""
        key = ContactKey.from_doc_id(contact_id)
        workspace_id = key.workspace_id
        listened = (
            contact_topic(key),
            run_topic(workspace_id),
            inbox_topic(workspace_id),
        )
        if workspace_id not in self._analytics_listened and not any(self._listened(t) for t in listened):
            return
        for topic, payload in turn_news(unpack(data)):
            if self._listened(topic):
                self._deliver(topic, payload)

    def _listened(self, topic: str) -> bool:
        return bool(self._queues.get(topic)) or bool(self._handlers.get(topic))

    def _deliver(self, topic: str, payload: dict[str, Any]) -> None:
        queues = self._queues.get(topic)
        handlers = self._handlers.get(topic)
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
