"""What every benchmark needs: embedded services, a runtime, a workspace, published flows, and
contacts cloned in bulk from one real actor turn (so setup does not dominate the measurement)."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from server.clock import SystemClock
from server.config import Settings
from server.dev.embedded import DEV_EGRESS_ALLOW, free_port, start_services
from server.identity import PHONE, Identities
from server.ids import new_contact_key, new_id
from server.operations import contacts as contact_ops
from server.operations import flows as flow_ops
from server.runtime import Runtime
from server.secret_box import generate_key
from server.store.identities import identity_id

WORKSPACE = "ws_bench"


@dataclass(frozen=True)
class Services:
    """Where a benchmark's store and Redis run, and their process ids (None when external)."""

    settings: Settings
    store_pid: int | None = None
    redis_pid: int | None = None


@contextmanager
def services() -> Iterator[Services]:
    """Embedded store + Redis on free ports in a temporary directory, both removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="konvo-bench-"))
    boot = Settings(
        data_dir=data_dir, store_port=free_port(), redis_port=free_port(), mongodb_uri=None, redis_url=None
    )
    running = start_services(boot, redis_persist=False)
    try:
        assert running.mongodb_uri and running.redis_url and running.store and running.redis
        settings = boot.model_copy(
            update={
                "mongodb_uri": running.mongodb_uri,
                "redis_url": running.redis_url,
                "mongodb_db": f"bench_{uuid.uuid4().hex[:8]}",
                **local_security(),
            }
        )
        yield Services(settings, running.store.pid, running.redis.pid)
    finally:
        running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def local_security(settings: Settings | None = None) -> dict[str, object]:
    """A fresh secret key and loopback egress (the Graph API fake), unless ``settings`` has them."""
    return {
        "secret_key": (settings and settings.secret_key) or SecretStr(generate_key()),
        "egress_allow": (settings and settings.egress_allow) or DEV_EGRESS_ALLOW,
    }


def rss_bytes() -> int:
    """Resident memory of this process, from /proc (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def workspace(runtime: Runtime) -> str:
    await runtime.workspaces.ensure(WORKSPACE, "Bench", "Europe/Madrid", SystemClock().now())
    return WORKSPACE


async def publish(runtime: Runtime, definition: dict[str, Any]) -> str:
    flow = await flow_ops.import_flow(runtime.services, WORKSPACE, definition)
    await flow_ops.publish_flow(runtime.services, WORKSPACE, flow["_id"])
    return str(flow["_id"])


def phone(index: int) -> str:
    return f"+3460{index:07d}"


async def waiting_template(runtime: Runtime, flow: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Publish ``flow`` and start it for phone(0): (flow id, that contact's document to clone)."""
    flow_id = await publish(runtime, flow)
    await contact_ops.customer_says(runtime.services, WORKSPACE, phone(0), "hola", None)
    await contact_ops.start_flow(runtime.services, WORKSPACE, flow_id, phone(0), None)
    key = await runtime.directory.find(WORKSPACE, Identities(phone=phone(0)))
    template = await runtime.contacts.load(key) if key is not None else None
    assert template is not None
    return flow_id, template


def clone_contact(template: dict[str, Any], index: int, due_at: datetime | None) -> dict[str, Any]:
    """A copy of ``template`` for another phone, with fresh run and timer ids."""
    doc = copy.deepcopy(template)
    key = new_contact_key(WORKSPACE)
    doc["_id"], doc["phone"], doc["applied_events"] = key.doc_id, phone(index), []
    doc.pop("lease_epoch", None)  # the clone lives on another shard: its owner fences it anew
    run_ids = {run["id"]: new_id("run") for run in doc.get("runs", [])}
    timer_ids = {timer["id"]: new_id("tmr") for timer in doc.get("timers", [])}
    for run in doc.get("runs", []):
        run["id"] = run_ids[run["id"]]
        waiting = run.get("waiting_for") or {}
        if waiting.get("timer_id"):
            waiting["timer_id"] = timer_ids[waiting["timer_id"]]
            if due_at is not None:
                waiting["due_at"] = due_at
    for timer in doc.get("timers", []):
        timer["id"], timer["run_id"] = timer_ids[timer["id"]], run_ids[timer["run_id"]]
        if due_at is not None:
            timer["due_at"] = due_at
    return doc


async def insert_clones(
    runtime: Runtime,
    template: dict[str, Any],
    count: int,
    due_at: datetime | None,
    first_index: int = 1,
    batch: int = 2000,
    spacing: timedelta = timedelta(0),
) -> list[str]:
    """Clones with their phones claimed in ``identities``, as contacts this version created are;
    their ids in order. The k-th clone's timers fall due ``k * spacing`` after ``due_at``."""
    contacts = runtime.database.collection("contacts")
    now = runtime.clock.now()
    ids: list[str] = []
    for start in range(first_index, first_index + count, batch):
        stop = min(start + batch, first_index + count)
        clones = [
            clone_contact(template, i, due_at + (i - first_index) * spacing if due_at else None)
            for i in range(start, stop)
        ]
        await contacts.insert_many(clones, ordered=False)
        await runtime.identities.claim_many([_phone_claim(clone, now) for clone in clones])
        ids += [clone["_id"] for clone in clones]
    return ids


def _phone_claim(contact: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "_id": identity_id(WORKSPACE, PHONE, contact["phone"]),
        "workspace_id": WORKSPACE,
        "kind": PHONE,
        "value": contact["phone"],
        "contact_id": contact["_id"],
        "at": now,
    }
