"""Data-subject requests: export everything held about one contact, or erase it.

Per-contact data lives in the collections of ``PER_CONTACT`` (one list to extend when a new
collection keyed by contact appears: each entry says how its documents name the contact), in
the contact document itself (runs, timers, outbox, external sync state, consent history) and in
Redis (armed timers and Klaviyo sync jobs, arq jobs named by id).

Erasure, in order: the contact's own actor turns its document into a **tombstone** (same id, so
a late timer or status reaching that actor finds it and resurrects nobody); the timer and sync
jobs are removed from Redis; every document of ``PER_CONTACT`` is deleted; each process's
directory forgets the contact. The tombstone holds no phone or BSUID in clear: keyed hashes
(HMAC-SHA256 with a random per-workspace salt, ``erasure_salt`` on the workspace document) of
its identities and of its messages' provider ids, who erased it (agent or API key id) and when.
A status webhook for a message erased this way is recognised by that hash and dropped (counted
as ``erased``); a new message from the person creates a fresh contact: its identities were
released.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from pymongo.errors import BulkWriteError

from server.actors.contact_actor import event_id
from server.actors.events import EraseContact
from server.clock import Clock
from server.contact_directory import ContactDirectory
from server.errors import InvalidInput, NotFound
from server.identity import KINDS
from server.ids import ContactKey, scoped_id
from server.integrations.klaviyo_sync import job_id as sync_job_id
from server.pubsub import RedisPubSub
from server.redis_keys import arq_job_id, integrations_queue, timer_queue
from server.services import ActorsHandle
from server.store.batching import DUPLICATE_KEY
from server.store.contacts import ContactRepository
from server.store.database import Database
from server.store.identities import IdentityRepository
from server.store.workspaces import WorkspaceRepository

log = logging.getLogger(__name__)

ERASED_TOPIC = "contacts:erased"
SALT_FIELD = "erasure_salt"

Query = dict[str, Any]


class ErasedMessageServices(Protocol):
    """Telling whether a message id belongs to an erased contact."""

    @property
    def database(self) -> Database: ...

    @property
    def workspaces(self) -> WorkspaceRepository: ...


class ErasureServices(Protocol):
    """Exporting and erasing a contact: the whole store, its identities, its timers and every
    process's directory cache."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def arq(self) -> ArqRedis: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def contacts(self) -> ContactRepository: ...

    @property
    def database(self) -> Database: ...

    @property
    def directory(self) -> ContactDirectory: ...

    @property
    def identities(self) -> IdentityRepository: ...

    @property
    def prefix(self) -> str: ...

    @property
    def pubsub(self) -> RedisPubSub: ...


@dataclass(frozen=True)
class Held:
    """Who a per-contact document is about: the contact, as stored before erasure."""

    workspace_id: str
    contact_id: str
    phone: str | None
    message_ids: list[str]


def _by_contact(held: Held) -> Query:
    return {"workspace_id": held.workspace_id, "contact_id": held.contact_id}


def _messages(held: Held) -> Query:
    query: Query = {"workspace_id": held.workspace_id, "contact_id": held.contact_id}
    if held.phone is None:
        return query
    legacy = {"workspace_id": held.workspace_id, "phone": held.phone, "contact_id": None}
    return {"$or": [query, legacy]}  # messages stored before identities name the phone only


def _by_message(held: Held) -> Query:
    return {"_id": {"$in": held.message_ids}}


def _message_refs(held: Held) -> Query:
    return {"workspace_id": held.workspace_id, "message_id": {"$in": held.message_ids}}


def _by_phone(held: Held) -> Query:
    if held.phone is None:
        return {"_id": {"$in": []}}
    return {"workspace_id": held.workspace_id, "phone": held.phone}


def _reach(held: Held) -> Query:
    keys = [held.contact_id] + ([f"{held.workspace_id}:{held.phone}"] if held.phone else [])
    return {"_id": {"$in": keys}}


def _by_id(held: Held) -> Query:
    return {"_id": held.contact_id}


def _merges(held: Held) -> Query:
    return {"$or": [{"_id": held.contact_id}, {"into": held.contact_id}]}


PER_CONTACT: tuple[tuple[str, Callable[[Held], Query]], ...] = (
    ("identities", _by_contact),
    ("message_refs", _message_refs),  # before messages: found through their ids
    ("inbound_pending", _by_message),
    ("message_statuses", _by_contact),
    ("messages", _messages),
    ("runs", _by_contact),
    ("broadcast_recipients", _by_contact),
    ("broadcast_audience", _by_contact),
    ("messaging_reach", _reach),
    ("hook_requests", _by_phone),  # webhook trigger requests (their body names the customer)
    ("contact_merges", _merges),
    ("flow_count_marks", _by_id),  # analytics: the last counted turn of the contact (by its id)
)
"""Every collection holding documents about one contact, and how they name it."""


async def _contact(services: ErasureServices, workspace_id: str, contact_id: str) -> dict[str, Any]:
    found = await services.contacts.get(workspace_id, contact_id)
    if found is None or found.get("erased_at") is not None:
        raise NotFound(f"contact {contact_id} not found", field="id")
    if found.get("merged_into"):
        raise InvalidInput(
            f"contact {contact_id} was merged into {found['merged_into']}; name that contact", field="id"
        )
    return found


async def _held(services: ErasureServices, contact: dict[str, Any]) -> Held:
    workspace_id = contact["workspace_id"]
    query = _messages(Held(workspace_id, contact["_id"], contact.get("phone"), []))
    messages = await services.database.collection("messages").find(query, {"_id": 1}).to_list()
    return Held(workspace_id, contact["_id"], contact.get("phone"), [m["_id"] for m in messages])


async def export_contact(services: ErasureServices, workspace_id: str, contact_id: str) -> dict[str, Any]:
    """Everything held about the contact: its document (fields, tags, consent history, runs with
    their steps, pending timers, outbox, external sync state), its identities, messages, archived
    runs, broadcast deliveries, status reports, webhook requests and merges."""
    contact = await _contact(services, workspace_id, contact_id)
    held = await _held(services, contact)
    merged = await services.contacts.get_many(workspace_id, list(contact.get("merged_from") or []))
    export: dict[str, Any] = {"contact": contact, "merged_contacts": merged}
    for name, query in PER_CONTACT:
        export[name] = await services.database.collection(name).find(query(held)).to_list()
    return export


async def erase_contact(
    services: ErasureServices, workspace_id: str, contact_id: str, by: str | None
) -> dict[str, Any]:
    """Erase the contact (and contacts merged into it); returns the tombstone."""
    contact = await _contact(services, workspace_id, contact_id)
    merged = await services.contacts.get_many(workspace_id, list(contact.get("merged_from") or []))
    tombstone: dict[str, Any] = {}
    for document in [*merged, contact]:
        tombstone = await _erase_one(services, document, by)
    return tombstone


async def _erase_one(services: ErasureServices, contact: dict[str, Any], by: str | None) -> dict[str, Any]:
    workspace_id, contact_id = contact["workspace_id"], contact["_id"]
    held = await _held(services, contact)
    salt = await workspace_salt(services, workspace_id)
    identities = await services.identities.of_contact(workspace_id, contact_id)
    pairs = {(i["kind"], i["value"]) for i in identities}
    pairs |= {(kind, contact[kind]) for kind in KINDS if contact.get(kind)}
    refs = await services.database.collection("message_refs").find(_message_refs(held)).to_list()
    provider_ids = {r["_id"] for r in refs} | set(held.message_ids)
    now = services.clock.now()
    tombstone = {
        "erased_at": now,
        "erased_by": by,
        "identity_hashes": sorted(keyed_hash(salt, f"{kind}:{value}") for kind, value in pairs),
        "erased_messages": len(held.message_ids),
    }
    message_hashes = sorted(keyed_hash(salt, provider_id) for provider_id in provider_ids)
    timers = [arq_job_id(t["id"]) for t in contact.get("timers", [])]
    syncs = [sync_job_id(entry) for entry in contact.get("external_sync", [])]
    await services.actors.ask(ContactKey.of_contact(contact), EraseContact(event_id(), tombstone))
    await _drop_jobs(services, timer_queue(services.prefix), timers)
    await _drop_jobs(services, integrations_queue(services.prefix), syncs)
    if message_hashes:  # the tombstone's side table: what a late status about them is checked against
        erased = [{"_id": h, "workspace_id": workspace_id, "contact_id": contact_id} for h in message_hashes]
        try:
            await services.database.collection("erased_messages").insert_many(erased, ordered=False)
        except BulkWriteError as exc:  # an erasure retried after a crash wrote some already
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise
    for name, query in PER_CONTACT:
        await services.database.collection(name).delete_many(query(held))
    services.directory.forget_contact(contact_id)
    try:
        await services.pubsub.publish(ERASED_TOPIC, {"contact_id": contact_id})
    except Exception:  # other processes' caches expire on their own (docs/contacts.md)
        log.warning("telling other processes that %s was erased failed", contact_id, exc_info=True)
    log.info("contact %s erased by %s", contact_id, by or "unknown")
    return {"_id": contact_id, "workspace_id": workspace_id, **tombstone}


async def _drop_jobs(services: ErasureServices, queue_name: str, job_ids: list[str]) -> None:
    """Remove arq jobs (armed timers, queued syncs) so nothing about the contact stays in Redis."""
    if not job_ids or services.arq is None:
        return
    prefixes = (job_key_prefix, result_key_prefix, retry_key_prefix, in_progress_key_prefix)
    async with services.arq.pipeline(transaction=False) as pipe:
        pipe.zrem(queue_name, *job_ids)
        pipe.delete(*[prefix + job for job in job_ids for prefix in prefixes])
        await pipe.execute()


def keyed_hash(salt: str, value: str) -> str:
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


async def workspace_salt(services: ErasureServices, workspace_id: str) -> str:
    """The workspace's erasure salt, made on first use (the first writer wins)."""
    workspaces = services.database.collection("workspaces")
    await workspaces.update_one(
        {"_id": workspace_id, SALT_FIELD: None}, {"$set": {SALT_FIELD: secrets.token_hex(32)}}
    )
    found = await workspaces.find_one({"_id": workspace_id}, {SALT_FIELD: 1})
    if found is None or not found.get(SALT_FIELD):
        raise NotFound(f"workspace {workspace_id} not found")
    return str(found[SALT_FIELD])


async def erased_message(services: ErasedMessageServices, workspace_id: str, provider_id: str) -> bool:
    """Whether a provider id names a message of an erased contact (a late status about it).

    Asked for every status whose message is unknown: a workspace that never erased anyone has no
    salt and costs one (batched) read; otherwise one query for both hashes.
    """
    hashes = await _message_hashes(services, workspace_id, provider_id)
    if not hashes:
        return False
    found = await services.database.collection("erased_messages").find_one(
        {"workspace_id": workspace_id, "_id": {"$in": hashes}}
    )
    return found is not None


async def _message_hashes(services: ErasedMessageServices, workspace_id: str, provider_id: str) -> list[str]:
    found = await services.workspaces.get(workspace_id)
    salt = (found or {}).get(SALT_FIELD)
    if not salt:
        return []
    return [keyed_hash(salt, scoped_id(workspace_id, provider_id)), keyed_hash(salt, provider_id)]
