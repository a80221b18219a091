"""Drive contacts through ``wait_and_timer_flow`` over real servers that may die under the driver,
and check the crash invariants in the store afterwards."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.reliability.conftest import WORKSPACE, Api
from tests.support.graphql import GraphQLErrors

START = "mutation($f: ID!, $p: String!) { startFlow(flowId: $f, phone: $p) { id } }"
SAY = "mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }"
FAILURES = (httpx.HTTPError, GraphQLErrors, AssertionError, ValueError)


@dataclass
class Outcome:
    """What the driver was told (acknowledged) and what it had to retry."""

    acked_starts: set[str] = field(default_factory=set)
    acked_replies: dict[str, list[str]] = field(default_factory=dict)  # phone -> texts acknowledged
    retries: int = 0


def phones(count: int, prefix: str = "+346990") -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


# A request that failed at the client may still be in flight on the server (forwarded to the shard
# owner when the replica the client spoke to died): give it time to commit before deciding from
# the store whether to send it again.
IN_FLIGHT_SETTLE = 1.0


async def contact_doc(mongo: AsyncMongoClient[dict[str, Any]], db: str, phone: str) -> dict[str, Any] | None:
    """The contact known by ``phone`` (its id is opaque: found by the phone it holds)."""
    return await mongo[db]["contacts"].find_one({"workspace_id": WORKSPACE, "phone": phone})


EFFECT = {"got": "tagged", "bye": "message_sent"}


def entered(run: dict[str, Any], node: str) -> int:
    """How many times the run's steps show ``node``'s effect (one step each time it is entered)."""
    return sum(1 for s in run.get("steps", []) if s.get("node") == node and s.get("action") == EFFECT[node])


async def drive_contact(
    api: Api,
    mongo: AsyncMongoClient[dict[str, Any]],
    db: str,
    flow_id: str,
    phone: str,
    outcome: Outcome,
    slots: list[int],
    rng: random.Random,
    spread: float = 2.0,
) -> None:
    await asyncio.sleep(rng.uniform(0, spread))
    attempt = 0
    while True:  # the customer writes first (opens the 24 h window; no run waits, so it is only noted)
        attempt += 1
        text = f"hello {phone} #{attempt}"
        try:
            await api.gql(rng.choice(slots))(SAY, p=phone, t=text)
            outcome.acked_replies.setdefault(phone, []).append(text)
            break
        except FAILURES:
            outcome.retries += 1
            await asyncio.sleep(IN_FLIGHT_SETTLE)
            if await contact_doc(mongo, db, phone):
                break
            await asyncio.sleep(0.2)
    while True:  # start the run once: retry only when the store shows no run
        try:
            await api.gql(rng.choice(slots))(START, f=flow_id, p=phone)
            outcome.acked_starts.add(phone)
            break
        except FAILURES:
            outcome.retries += 1
            await asyncio.sleep(IN_FLIGHT_SETTLE)
            doc = await contact_doc(mongo, db, phone)
            if doc and doc.get("runs"):
                break
            await asyncio.sleep(0.2)
    attempt = 0
    while True:  # reply until one is acknowledged or the store shows the run moved on
        attempt += 1
        text = f"reply {phone} #{attempt}"
        try:
            await api.gql(rng.choice(slots))(SAY, p=phone, t=text)
            outcome.acked_replies.setdefault(phone, []).append(text)
            return
        except FAILURES:
            outcome.retries += 1
            await asyncio.sleep(IN_FLIGHT_SETTLE)
            doc = await contact_doc(mongo, db, phone)
            if doc and any(entered(r, "got") for r in doc.get("runs", [])):
                return
            await asyncio.sleep(0.2)


def drive_all(
    api: Api,
    mongo: AsyncMongoClient[dict[str, Any]],
    db: str,
    flow_id: str,
    numbers: list[str],
    outcome: Outcome,
    slots: list[int],
    rng: random.Random,
) -> asyncio.Future[list[None]]:
    """Every contact driven at once, their starts spread over a second per 100 contacts (2 s at least)."""
    spread = max(2.0, len(numbers) / 100)
    return asyncio.gather(
        *(drive_contact(api, mongo, db, flow_id, p, outcome, slots, rng, spread=spread) for p in numbers)
    )


async def all_ended(
    mongo: AsyncMongoClient[dict[str, Any]], db: str, numbers: list[str], deadline: float
) -> list[dict[str, Any]]:
    """Wait (up to ``deadline`` seconds) until every contact's run has ended; return the documents."""
    until = time.monotonic() + deadline
    while True:
        docs = await mongo[db]["contacts"].find({"workspace_id": WORKSPACE}).to_list()
        by_phone = {d["phone"]: d for d in docs}
        pending = [
            p
            for p in numbers
            if p not in by_phone or any(r["status"] in ("active", "waiting") for r in by_phone[p]["runs"])
        ]
        if not pending:
            return [by_phone[p] for p in numbers]
        if time.monotonic() > until:
            sample = {
                p: [(r["node"], r["status"]) for r in by_phone.get(p, {}).get("runs", [])]
                for p in pending[:5]
            }
            raise AssertionError(f"{len(pending)} runs stuck after {deadline}s, e.g. {sample}")
        await asyncio.sleep(0.25)


@dataclass
class Verdict:
    inbound_acked: int = 0
    inbound_applied_twice: int = 0
    inbound_missing: int = 0
    timers_fired: int = 0
    timers_twice: int = 0
    runs: int = 0
    outbound: int = 0
    outbound_duplicates: int = 0
    problems: list[str] = field(default_factory=list)


async def verify(
    mongo: AsyncMongoClient[dict[str, Any]], db: str, docs: list[dict[str, Any]], outcome: Outcome
) -> Verdict:
    verdict = Verdict()
    inbound = await mongo[db]["messages"].find({"direction": "in"}).to_list()
    id_of = {(m["phone"], m.get("text")): m["_id"] for m in inbound}
    outbound = await mongo[db]["messages"].find({"direction": "out"}).to_list()
    sent = Counter((m["phone"], m.get("text")) for m in outbound)
    verdict.outbound = len(outbound)
    verdict.outbound_duplicates = sum(n - 1 for n in sent.values() if n > 1)
    for doc in docs:
        phone = doc["phone"]
        runs = doc.get("runs", [])
        verdict.runs += len(runs)
        if len(runs) != 1:
            verdict.problems.append(f"{phone}: {len(runs)} runs")
            continue
        run = runs[0]
        if run["status"] != "completed" or entered(run, "got") != 1:
            verdict.problems.append(
                f"{phone}: run {run['status']} at {run['node']}, got x{entered(run, 'got')}"
            )
        bye = entered(run, "bye")
        verdict.timers_fired += bye == 1
        verdict.timers_twice += bye > 1
        applied = Counter(doc.get("applied_events", []))
        for text in outcome.acked_replies.get(phone, []):
            verdict.inbound_acked += 1
            message_id = id_of.get((phone, text))
            if message_id is None or applied[message_id] == 0:
                verdict.inbound_missing += 1
            elif applied[message_id] > 1:
                verdict.inbound_applied_twice += 1
    return verdict
