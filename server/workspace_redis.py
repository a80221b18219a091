"""Everything a workspace holds in Redis, removed when an operator deletes it.

Redis holds no source of truth (the store does), but a deleted workspace must leave nothing:

- **jobs** of the timer and integration queues whose arguments name the workspace (arq's
  ``arq:job:<id>`` records, the queue entries, their in-progress and retry marks, and the
  results arq's own worker keeps for finished ones);
- keys of this deployment (``konvo:<db>:...``) named by the workspace: a ``:``-separated part
  of the name is the workspace id (status marks of its messages), one of its API key ids (rate
  windows, WebSocket slots) or webhook triggers (signature nonces), or one of its phone number ids
  no other workspace uses (the throughput limiter).

Pub/sub keeps no keys: its subscriptions end with the sockets of the workspace's keys, which the
deletion closes. Finding jobs reads every queued job record and every kept result (a rare
operator action, done in batches), since job ids do not name their workspace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.jobs import deserialize_job_raw, deserialize_result

from server.redis_clients import RedisCommands
from server.store.workspace_data import WorkspaceNames

log = logging.getLogger(__name__)

BATCH = 500

Deserializer = Callable[[bytes], dict[str, Any]]


@dataclass
class RedisSweep:
    keys: int = 0  # keys deleted
    jobs: int = 0  # queue entries removed
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def add(self, other: RedisSweep) -> None:
        self.keys += other.keys
        self.jobs += other.jobs
        for kind, n in other.by_kind.items():
            self.count(kind, n)


class WorkspaceRedis:
    def __init__(
        self,
        redis: RedisCommands,
        prefix: str,
        queues: Iterable[str],
        deserializer: Deserializer | None = None,
    ) -> None:
        """``prefix``: this deployment's key prefix; ``queues``: the arq queues whose jobs name a
        workspace as their first argument (timers, external syncs)."""
        self._redis = redis
        self._prefix = prefix
        self._queues = list(queues)
        self._deserializer = deserializer

    async def delete(self, names: WorkspaceNames) -> RedisSweep:
        sweep = RedisSweep()
        for queue in self._queues:
            await self._delete_queued_jobs(queue, names.workspace_id, sweep)
        await self._delete_results(names.workspace_id, sweep)
        await self._delete_named_keys(names, sweep)
        if sweep.keys or sweep.jobs:
            log.info("workspace %s: Redis sweep removed %s", names.workspace_id, sweep)
        return sweep

    async def _delete_queued_jobs(self, queue: str, workspace_id: str, sweep: RedisSweep) -> None:
        ours: list[str] = []
        batch: list[str] = []
        async for member, _score in self._redis.zscan_iter(queue, count=BATCH):
            batch.append(_text(member))
            if len(batch) >= BATCH:
                ours += await self._jobs_of(batch, workspace_id)
                batch = []
        if batch:
            ours += await self._jobs_of(batch, workspace_id)
        for start in range(0, len(ours), BATCH):
            chunk = ours[start : start + BATCH]
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(queue, *chunk)
                pipe.delete(
                    *(
                        prefix + job_id
                        for job_id in chunk
                        for prefix in (
                            job_key_prefix,
                            in_progress_key_prefix,
                            retry_key_prefix,
                            result_key_prefix,
                        )
                    )
                )
                removed, deleted = await pipe.execute()
            sweep.jobs += int(removed)
            sweep.keys += int(deleted)
            sweep.count("jobs", int(removed))

    async def _jobs_of(self, job_ids: list[str], workspace_id: str) -> list[str]:
        records = await self._redis.mget([job_key_prefix + job_id for job_id in job_ids])
        ours = []
        for job_id, record in zip(job_ids, records, strict=True):
            if record is None:
                continue
            try:
                _function, args, _kwargs, _tries, _at = deserialize_job_raw(
                    record, deserializer=self._deserializer
                )
            except Exception:  # not a job of ours (another tool's queue entry): leave it
                continue
            if args and args[0] == workspace_id:
                ours.append(job_id)
        return ours

    async def _delete_results(self, workspace_id: str, sweep: RedisSweep) -> None:
        """Results arq's own worker keeps for finished jobs (the integrations worker), by argument."""
        queues = set(self._queues)
        async for keys in self._scan(result_key_prefix + "*"):
            values = await self._redis.mget(keys)
            doomed = []
            for key, value in zip(keys, values, strict=True):
                if value is None:
                    continue
                try:
                    result = deserialize_result(value, deserializer=self._deserializer)
                except Exception:
                    continue
                if result.queue_name in queues and result.args and result.args[0] == workspace_id:
                    doomed.append(key)
            if doomed:
                sweep.keys += int(await self._redis.delete(*doomed))
                sweep.count("results", len(doomed))

    async def _delete_named_keys(self, names: WorkspaceNames, sweep: RedisSweep) -> None:
        exact = {f"rate:{key_id}" for key_id in names.key_ids}
        exact |= {f"sockets:{key_id}" for key_id in names.key_ids}
        exact |= {f"wa:throughput:{number}" for number in names.phone_number_ids}
        nonces = tuple(f"hook-signature:{trigger_id}:" for trigger_id in names.trigger_ids)
        async for keys in self._scan(_glob_escape(self._prefix) + "*"):
            doomed = []
            for key in keys:
                rest = key[len(self._prefix) :]
                if rest in exact or rest.startswith(nonces) or names.workspace_id in rest.split(":"):
                    doomed.append(key)
            if doomed:
                sweep.keys += int(await self._redis.delete(*doomed))
                for key in doomed:
                    sweep.count(key[len(self._prefix) :].split(":", 1)[0])

    async def _scan(self, match: str) -> AsyncIterator[list[str]]:
        batch: list[str] = []
        async for key in self._redis.scan_iter(match=match, count=1000):
            batch.append(_text(key))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
