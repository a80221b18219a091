"""Customers known by phone, BSUID or both: Meta's 2026 webhooks parsed, sends addressed, merges ruled.

Webhook fixtures follow Meta's business-scoped user ID page and webhook references
(tests/fixtures/whatsapp_webhooks/README.md); facts in tests/conformance/whatsapp-bsuid.md.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from server.actors.identity_commands import absorb, note_identities
from server.channels.whatsapp.errors import classify
from server.channels.whatsapp.payloads import PayloadError, build
from server.channels.whatsapp.webhook import MalformedWebhook, parse_webhook
from server.errors import InvalidInput
from server.identity import BSUID, PARENT_BSUID, Identities, address_of, bsuid_kind, parse_bsuid
from tests.support.graph_api_fake import graph_error
from tests.support.openapi import describe, operation
from tests.support.whatsapp_webhooks import payload, value_of

SEND = operation("/{Version}/{Phone-Number-ID}/messages", "post")
USER = "US.13491208655302741918"
PARENT = "US.ENT.11815799212886844830"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_a_username_only_message_names_its_sender_by_bsuid() -> None:
    [message] = parse_webhook(payload("text_username_only")).messages
    assert message.from_ is None and message.user_id == USER
    assert (message.username, message.profile_name, message.text) == (
        "@sheena.nelson",
        "Sheena Nelson",
        "Hola, ¿tenéis la talla M?",
    )
    [tap] = parse_webhook(payload("interactive_button_reply_username_only")).messages
    assert (tap.kind, tap.button_id, tap.user_id, tap.from_) == ("button", "yes", USER, None)


def test_phone_bsuid_and_parent_bsuid_together() -> None:
    [message] = parse_webhook(payload("text_with_bsuid")).messages
    assert (message.from_, message.user_id, message.parent_user_id) == ("16505551234", USER, PARENT)


def test_a_message_naming_no_sender_is_malformed() -> None:
    body = payload("text_username_only")
    del value_of(body)["messages"][0]["from_user_id"]  # contacts[] alone does not say who wrote
    with pytest.raises(MalformedWebhook, match=r"messages\[0\]\.from \(or \.from_user_id\)"):
        parse_webhook(body)


def test_statuses_name_the_recipients_bsuid() -> None:
    [status] = parse_webhook(payload("status_delivered_bsuid")).statuses
    assert (status.recipient.wa_id, status.recipient.user_id, status.recipient.username) == (
        None,
        USER,
        "@sheena.nelson",
    )
    body = payload("status_delivered")
    value_of(body)["statuses"][0]["recipient_user_id"] = USER
    [status] = parse_webhook(body).statuses
    assert (status.recipient.wa_id, status.recipient.user_id) == ("16505551234", USER)


def test_identity_changes_from_system_messages_and_user_id_update() -> None:
    [number] = parse_webhook(payload("system_user_changed_number")).identity_changes
    assert (number.kind, number.old, number.new) == ("phone", "16505551234", "12195555358")
    assert number.event_id.startswith("wamid.") and number.phone_number_id == "106540352242922"
    [user_id] = parse_webhook(payload("system_user_changed_user_id")).identity_changes
    assert (user_id.kind, user_id.old, user_id.new) == (BSUID, USER, "US.57200419966310384721")
    batch = parse_webhook(payload("user_id_update"))
    [update] = batch.identity_changes
    assert (update.kind, update.old, update.new, update.person.wa_id) == (
        BSUID,
        USER,
        "US.57200419966310384721",
        "16505551234",
    )
    assert not batch.messages and not batch.skipped


def test_bsuid_formats() -> None:
    assert bsuid_kind(USER) == BSUID and bsuid_kind(PARENT) == PARENT_BSUID
    for wrong in ("us.123", "US123", "US.", "US.12-3", "+34600111222", "USA.1", "US." + "1" * 129):
        assert bsuid_kind(wrong) is None, wrong
    assert parse_bsuid(f" {USER} ") == USER
    with pytest.raises(InvalidInput, match="is not a business-scoped user ID"):
        parse_bsuid(PARENT, field="bsuid")


def conforms(body: dict[str, Any]) -> dict[str, Any]:
    assert SEND.request is not None
    errors = list(SEND.request.iter_errors(body))
    assert not errors, describe(errors)
    return body


def test_a_send_goes_to_the_phone_when_known_else_to_the_bsuid() -> None:
    both = {"_id": "ws:ct_1", "phone": "+34600111222", "bsuid": USER}
    message = {"kind": "text", "text": "Hola", **address_of(both)}
    assert conforms(build(message))["to"] == "34600111222" and "recipient" not in build(message)
    username_only = {"_id": "ws:ct_2", "phone": None, "bsuid": USER}
    body = conforms(build({"kind": "text", "text": "Hola", **address_of(username_only)}))
    assert body["recipient"] == USER and "to" not in body
    parent_only = {"_id": "ws:ct_3", "parent_bsuid": PARENT}
    assert conforms(build({"kind": "text", "text": "Hola", **address_of(parent_only)}))["recipient"] == PARENT
    with pytest.raises(PayloadError) as nobody:
        build({"kind": "text", "text": "Hola", **address_of({"_id": "ws:ct_4"})})
    assert nobody.value.code == "NO_RECIPIENT"


def test_131062_is_a_permanent_failure_with_its_code() -> None:
    status, body = graph_error(131062)
    failure = classify(status, body)
    assert (failure.verdict, failure.code) == ("permanent", "131062")
    assert "business-scoped user ID" in failure.message


def test_the_latest_identities_win_and_absent_ones_stay() -> None:
    contact: dict[str, Any] = {"_id": "ws:ct_1", "phone": "+34600111222", "bsuid": USER, "username": "@a"}
    assert not note_identities(contact, Identities(bsuid=USER))
    assert note_identities(contact, Identities(bsuid="US.2", username="@b"))
    assert (contact["phone"], contact["bsuid"], contact["username"]) == ("+34600111222", "US.2", "@b")


def test_the_merge_rule() -> None:
    older = {
        "_id": "ws:+34600111222",
        "phone": "+34600111222",
        "tags": ["vip"],
        "variables": {"city": "Bilbao", "size": "S", "note": None},
        "opted_in": True,
        "opt_in": {"at": NOW, "source": "api"},
        "last_inbound_at": datetime(2026, 1, 1, tzinfo=UTC),
        "unread": 1,
    }
    newer = {
        "_id": "ws:ct_1",
        "bsuid": USER,
        "username": "@eva",
        "name": "Eva",
        "tags": ["b2b", "vip"],
        "variables": {"size": "L", "note": "llamar"},
        "opted_in": False,
        "opt_out": {"at": NOW, "source": "keyword"},
        "last_inbound_at": NOW,
        "unread": 2,
        "assigned_agent": "agt_1",
        "assignment": {"agent_id": "agt_1"},
    }
    survivor = copy.deepcopy(older)
    absorb(survivor, newer, NOW)
    assert survivor["tags"] == ["vip", "b2b"]
    assert survivor["variables"] == {"city": "Bilbao", "size": "S", "note": "llamar"}
    assert (survivor["phone"], survivor["bsuid"], survivor["username"], survivor["name"]) == (
        "+34600111222",
        USER,
        "@eva",
        "Eva",
    )
    assert survivor["opted_in"] is False and survivor["opt_out"]["source"] == "merge"
    assert survivor["last_inbound_at"] == NOW and survivor["unread"] == 3
    assert survivor["assigned_agent"] == "agt_1"
    assert survivor["merged_from"] == [{"contact_id": "ws:ct_1", "at": NOW}]
    # Consent given on one side and withdrawn on neither stands.
    given = copy.deepcopy({**newer, "opted_in": True, "opt_in": {"at": NOW}, "opt_out": None})
    unasked = {"_id": "ws:+34600999000", "phone": "+34600999000"}
    absorb(unasked, given, NOW)
    assert unasked["opted_in"] is True and unasked["opt_in"]["source"] == "merge"
