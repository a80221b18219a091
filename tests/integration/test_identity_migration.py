"""A store written by the version before identities, started on by this one (two replicas at once).

``tests/fixtures/legacy_store`` holds what commit 4274ef9 (contacts keyed by phone) wrote for a
shop: three contacts (one waiting at a question with its no-reply timer, one in a 2-hour delay,
one done), their runs, messages, message references and statuses, and the arq timer jobs in
Redis, which name contacts by ``workspace, phone``. Nothing of it is rewritten: the start-up
migration only indexes what each contact is known by. Counted before and after, then the waiting
run answers (by a webhook that now carries a BSUID too), the delay's timer fires, and a status of
a message the old version sent reaches its run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import json_util
from pydantic import SecretStr

from server.clock import SystemClock
from server.config import Settings
from server.runtime import Runtime
from server.store.database import Database
from server.web.app import create_app
from tests.support.clock import ShiftedClock
from tests.support.graph_api_fake import GraphApiFake
from tests.support.graphql import GraphQLClient, eventually
from tests.support.network import HostsResolver
from tests.support.whatsapp_people import WhatsAppUser, message_from, new_bsuid
from tests.support.whatsapp_webhooks import APP_SECRET, WebhookClient, payload, value_of

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_store"
META = json.loads((LEGACY / "meta.json").read_text(encoding="utf-8"))
WORKSPACE = META["workspace_id"]
PHONES = META["phones"]
CONTACT = """query($w: String!) { contact(whatsappId: $w) {
  id phone bsuid runs { status node steps { node action outcome } } } }"""


def legacy_store() -> dict[str, list[dict[str, Any]]]:
    text = (LEGACY / "store.json").read_text(encoding="utf-8")
    return json_util.loads(text, json_options=json_util.CANONICAL_JSON_OPTIONS)


async def restore(settings: Settings, fake: GraphApiFake) -> dict[str, int]:
    """Load the legacy store and timer queue; returns what it holds, counted."""
    database = Database(settings.mongodb_uri or "", settings.mongodb_db)
    try:
        for name, documents in legacy_store().items():
            if name == "channels":  # the Graph API now answers on this test's port
                documents = [{**d, "base_url": fake.url} for d in documents]
            await database.collection(name).insert_many(documents)
        # The conversation index of that version (by phone), which this one retires.
        await database.collection("messages").create_index([("workspace_id", 1), ("phone", 1), ("at", 1)])
    finally:
        await database.close()
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url or "")
    try:
        timers = json.loads((LEGACY / "redis.json").read_text(encoding="utf-8"))
        queue = f"konvo:{settings.mongodb_db}:{timers['queue_suffix']}"
        for job in timers["jobs"]:
            await redis.zadd(queue, {job["id"]: job["score"]})
            await redis.set("arq:job:" + job["id"], base64.b64decode(job["record"]))
    finally:
        await redis.aclose()
    return await counts(settings)


async def counts(settings: Settings) -> dict[str, int]:
    database = Database(settings.mongodb_uri or "", settings.mongodb_db)
    try:
        contacts = await database.collection("contacts").find({}).to_list()
        return {
            "contacts": len(contacts),
            "runs": await database.collection("runs").count_documents({}),
            "messages": await database.collection("messages").count_documents({}),
            "timers": sum(len(c.get("timers", [])) for c in contacts),
        }
    finally:
        await database.close()


@pytest.fixture
def legacy_settings(fast_settings: Settings) -> Settings:
    """The channel's secrets were sealed with the key the legacy store was written with."""
    return fast_settings.model_copy(update={"secret_key": SecretStr(META["secret_key"])})


@pytest.fixture
def clock() -> ShiftedClock:
    """A minute after the legacy version stopped writing."""
    clock = ShiftedClock(SystemClock())
    clock.advance(datetime.fromisoformat(META["written_at"]) + timedelta(minutes=1) - clock.now())
    return clock


async def test_a_store_of_the_previous_version_keeps_every_contact_run_timer_and_message(
    legacy_settings: Settings, clock: ShiftedClock, fake: GraphApiFake
) -> None:
    before = await restore(legacy_settings, fake)
    assert before == {"contacts": 3, "runs": 3, "messages": 11, "timers": 2}
    replicas = [
        Runtime(
            legacy_settings.model_copy(update={"replica_id": f"replica{n}-{uuid.uuid4().hex[:6]}"}),
            clock=clock,
            resolver=HostsResolver(),
        )
        for n in range(2)
    ]
    await asyncio.gather(*(replica.start() for replica in replicas))  # both migrate at once
    runtime = replicas[0]
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime.settings, runtime=runtime)),
        base_url="http://konvo.test",
    )
    try:
        assert await counts(legacy_settings) == before
        identities = runtime.database.collection("identities")
        indexed = {d["value"]: d["contact_id"] async for d in identities.find({"workspace_id": WORKSPACE})}
        assert indexed == {phone: f"{WORKSPACE}:{phone}" for phone in PHONES.values()}  # the ids stay
        assert await runtime.database.collection("contact_merges").count_documents({}) == 0
        upgrade = await runtime.database.collection("upgrades").find_one({"_id": "contact_identities"})
        assert upgrade is not None and upgrade["done_at"] is not None
        # In the background, the old messages get the contact id they were written for.
        backfills = [r.message_backfill for r in replicas if r.message_backfill is not None]
        assert sum(await asyncio.gather(*backfills)) == before["messages"]
        messages = runtime.database.collection("messages")
        assert await messages.count_documents({"contact_id": {"$exists": False}}) == 0
        written = {m["_id"]: f"{WORKSPACE}:{m['phone']}" for m in legacy_store()["messages"]}
        assert {m["_id"]: m["contact_id"] async for m in messages.find({})} == written
        indexes = {i["name"] async for i in await messages.list_indexes()}
        assert "workspace_id_1_phone_1_at_1" not in indexes  # one conversation index, by contact_id

        gql = await _client(runtime, http)
        meta = WebhookClient(http, META["channel_id"], app_secret=APP_SECRET)
        # The customer at the question answers; Meta now names them by BSUID as well.
        waiting = WhatsAppUser(bsuid=new_bsuid("ES"), phone=PHONES["waiting"])
        answer = await meta.post(message_from(waiting, button=("yes", "Sí"), at=clock.now()))
        assert answer.status_code == 200
        moved = await eventually(
            lambda: _contact(gql, waiting.bsuid), lambda c: c is not None and c["runs"][-1]["node"] == "size"
        )
        assert moved["id"] == f"{WORKSPACE}:{PHONES['waiting']}" and moved["phone"] == PHONES["waiting"]
        [question] = await eventually(_sent(fake), lambda sent: len(sent) >= 1)
        assert (
            question["to"] == PHONES["waiting"].lstrip("+") and question["text"]["body"] == "¿Qué talla usas?"
        )

        # A status of a message the previous version sent reaches the run that sent it.
        old = await runtime.messages.conversation(_legacy_key(PHONES["delayed"]), 20)
        first_out = next(m for m in old if m["direction"] == "out")
        status = payload("status_read")
        value_of(status)["statuses"][0].update(
            id=first_out["provider_id"],
            recipient_id=PHONES["delayed"].lstrip("+"),
            timestamp=str(int(clock.now().timestamp())),
        )
        assert (await meta.post(status)).status_code == 200
        await eventually(
            lambda: runtime.messages.get(first_out["_id"]), lambda m: m is not None and m["status"] == "read"
        )
        # The run records it in the contact's own turn, told after the message is written: wait for
        # that turn before the delay fires, or the run may complete first (both orders are right).
        await eventually(
            lambda: _contact(gql, PHONES["delayed"]),
            lambda c: any(
                s["action"] == "message_status" and s["outcome"] == "read" for s in c["runs"][-1]["steps"]
            ),
        )

        # The delay armed by the previous version (an arq job naming ``workspace, phone``) fires.
        clock.advance(timedelta(hours=2, minutes=5))
        done = await eventually(
            lambda: _contact(gql, PHONES["delayed"]),
            lambda c: c["runs"][-1]["status"] == "COMPLETED",
            timeout=20,
        )
        assert [s["action"] for s in done["runs"][-1]["steps"]][-2:] == ["message_sent", "ended"]
        sent = await eventually(_sent(fake), lambda found: len(found) >= 2)
        thanks = [b for b in sent if b.get("to") == PHONES["delayed"].lstrip("+")]
        assert [b["text"]["body"] for b in thanks] == ["Gracias, tu talla M está reservada"]
        steps = done["runs"][-1]["steps"]
        assert any(s["action"] == "message_status" and s["outcome"] == "read" for s in steps)

        after = await counts(legacy_settings)
        assert after["contacts"] == before["contacts"] and after["runs"] == before["runs"]
        assert after["messages"] == before["messages"] + 3  # the answer, the question, the thanks
        written_before = [m for m in legacy_store()["messages"] if m["phone"] == PHONES["waiting"]]
        conversation = await runtime.messages.conversation(_legacy_key(PHONES["waiting"]), 50)
        assert len(conversation) == len(written_before) + 2  # and today's answer and question
    finally:
        await http.aclose()
        for replica in replicas:
            await replica.stop()


def _legacy_key(phone: str) -> Any:
    from server.ids import ContactKey

    return ContactKey(WORKSPACE, phone)


def _sent(fake: GraphApiFake) -> Any:
    async def probe() -> list[dict[str, Any]]:
        return fake.sent()

    return probe


async def _client(runtime: Runtime, http: httpx.AsyncClient) -> GraphQLClient:
    from server.store.workspaces import new_api_key

    api_key = new_api_key()
    await runtime.workspaces.add_key(WORKSPACE, api_key, "ADMIN", "test", runtime.clock.now())
    return GraphQLClient(http, api_key)


async def _contact(gql: GraphQLClient, whatsapp_id: str) -> dict[str, Any] | None:
    return (await gql(CONTACT, w=whatsapp_id))["contact"]
