"""The layout of the Redis keys the server writes, and which of them must share a hash slot.

Redis Cluster runs a Lua script, a MULTI/EXEC or a multi-key command only when every key it touches
hashes to one slot. A key's slot is CRC16 of its *hash tag* (the text between the first ``{`` and
the next ``}``), or of the whole key when it has none. So every family of keys used together
carries one tag, and every other key carries none and spreads over the cluster on its own:

==========================  ================================================  ========================
family                      keys (``P`` = ``konvo:<db>:``)                    slot
==========================  ================================================  ========================
shard leases                ``{P shards}:members|epoch|lease:<n>``            one per deployment: the
                                                                              acquire script takes
                                                                              the epoch with leases
arq (timers, integrations)  queues ``{arq:abort}P timers`` and                one, ``arq:abort``'s
                            ``{arq:abort}P integrations``; job ids            (see below)
                            ``{arq:abort}<id>`` so arq's ``arq:job:``,
                            ``arq:in-progress:``, ``arq:retry:`` and
                            ``arq:result:`` keys; the recovery marker
socket slots                ``{P sockets}:<api key id>``                      one: renewal is one
                                                                              script over every key
                                                                              a process holds
everything else             rate windows, replay nonces, parked-report        its own key (one key
                            flags, throughput and pair schedules, shard       per script or command)
                            inbox/replies lists, pub/sub channels
==========================  ================================================  ========================

Why arq's slot is ``arq:abort``'s: arq's own ``Worker`` (the integration jobs) finishes a job with
one MULTI over the job's keys, the queue *and* the fixed key ``arq:abort``, which carries no tag;
the only slot all of them can share is the one ``arq:abort`` hashes to, so the tag is its name.
The timers' Lua scripts touch the queue with the job keys of every timer they arm or claim, so
all timers of a deployment share that slot too: one cluster node serves the timer schedule
(docs/scaling.md has its budget). Pub/sub channels have no slot: a PUBLISH reaches subscribers on
every node.
"""

from __future__ import annotations

ARQ_TAG = "{arq:abort}"


def key_prefix(db: str) -> str:
    """The untagged prefix of one deployment's keys (its MongoDB database name)."""
    return f"konvo:{db}:"


def tag(name: str) -> str:
    """``name`` as a hash tag: every key starting with it hashes by ``name`` alone."""
    if "{" in name or "}" in name:
        raise ValueError(f"a hash tag cannot contain braces: {name!r}")
    return "{" + name + "}"


def shard_keys_prefix(prefix: str) -> str:
    """Membership, epoch and leases of the contact shards: one slot."""
    return tag(prefix + "shards") + ":"


def shard_lease_key(prefix: str, shard: int) -> str:
    return f"{shard_keys_prefix(prefix)}lease:{shard}"


def socket_slots_prefix(prefix: str) -> str:
    """Per-API-key socket sets: one slot, renewed by one script per process."""
    return tag(prefix + "sockets") + ":"


def timer_queue(prefix: str) -> str:
    return ARQ_TAG + prefix + "timers"


def legacy_timer_queue(prefix: str) -> str:
    """The timer queue before keys were tagged; :func:`server.actors.timers.migrate_legacy_timers`
    moves what it holds."""
    return prefix + "timers"


def integrations_queue(prefix: str) -> str:
    return ARQ_TAG + prefix + "integrations"


def arq_job_id(name: str) -> str:
    """An arq job id whose keys (``arq:job:<id>`` ...) land in the arq queues' slot."""
    return name if name.startswith(ARQ_TAG) else ARQ_TAG + name


def recovery_marker(prefix: str) -> str:
    """Kept in the timers' slot: when that node loses its data, the marker goes with the timers
    and recovery re-arms them from the store."""
    return ARQ_TAG + prefix + "recovery:marker"
