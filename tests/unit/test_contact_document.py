"""The contact document's shape (``server/documents.py``): every key the actor's commands and
the turn's bookkeeping write is one ``ContactDoc`` lists, and a stored document is checked once
where it enters a turn (``as_contact``). No store: the commands are pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.actors.contact_commands import TOMBSTONE_KEEPS, apply_command
from server.actors.events import (
    AbsorbContact,
    AgentMessage,
    AssignAgent,
    EraseContact,
    Event,
    ExternalSyncResult,
    MarkRead,
    MergeInto,
    ReleaseContact,
    SetConsent,
    SetVariables,
    TagContact,
    UpdateIdentities,
)
from server.actors.identity_commands import apply_identity_command
from server.actors.turn_logic import TurnLogic
from server.documents import ContactDoc, as_contact
from server.ids import ContactKey
from server.machines.turn import Turn
from server.store.contacts import new_contact

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KNOWN = ContactDoc.__required_keys__ | ContactDoc.__optional_keys__
AGENT = {"_id": "agt_1", "email": "ana@shop.example", "name": "Ana"}


def contact() -> ContactDoc:
    document = new_contact(ContactKey("ws_unit", "+34600111222"), NOW - timedelta(days=3))
    document["last_inbound_at"] = NOW - timedelta(minutes=5)  # the window is open: an agent may write
    return document


def test_every_key_a_command_or_the_turns_bookkeeping_writes_is_one_the_type_lists() -> None:
    """Consent, assignment, the inbox, external syncs, identities and merges each add keys to the
    contact; ``ContactDoc`` must list every one (a key it does not list is one the typed code
    cannot read or write)."""
    document = contact()
    turn = Turn(contact=document, now=NOW)
    link = {"provider": "klaviyo", "property": "size"}
    commands: list[Event] = [
        SetVariables("e1", {"size": "M"}, links={"size": link}),
        TagContact("e2", add=("vip",)),
        SetConsent("e3", opted_in=True),
        SetConsent("e4", opted_in=False, source="keyword"),
        AssignAgent("e5", AGENT, team="Sales"),
        AgentMessage("e6", "Hola", agent_id="agt_1"),
        ReleaseContact("e7"),
        MarkRead("e8"),
    ]
    for event in commands:
        apply_command(turn, event)
        assert set(document) <= KNOWN, type(event).__name__
    sync_id = document["external_sync"][0]["id"]
    apply_command(turn, ExternalSyncResult("e9", sync_id, ok=False, error="503", retry_at=NOW))
    apply_identity_command(turn, UpdateIdentities("e10", bsuid="ES.1234567890", username="ana_g"))
    absorbed: dict[str, Any] = {
        **new_contact(ContactKey("ws_unit", "+34600999888"), NOW - timedelta(days=9)),
        "unread": 2,
        "last_message_at": NOW - timedelta(hours=1),
        "tags": ["old"],
    }
    apply_identity_command(turn, AbsorbContact("e11", absorbed))
    TurnLogic.finish(None, turn, MarkRead("e12"))  # version, updated_at, applied_events
    assert set(document) <= KNOWN
    assert {"opt_out", "last_release", "unread", "last_message_at", "merged_from", "applied_events"} <= set(
        document
    )
    apply_identity_command(turn, MergeInto("e13", into="ws_unit:ctc_other"))
    assert document["merged_into"] == "ws_unit:ctc_other" and set(document) <= KNOWN


def test_an_erased_contact_keeps_only_its_tombstone_also_dropping_keys_the_type_does_not_list() -> None:
    """Erasure works on the document as the plain dict it is: a key written by an older server
    (listed nowhere) goes with the rest, in place (the actor commits the turn's own document)."""
    document = contact()
    as_stored: dict[str, Any] = dict(document)
    as_stored["legacy_note"] = "written by an older version"
    stored = as_contact(as_stored)
    stored["lease_epoch"] = 7
    turn = Turn(contact=stored, now=NOW)
    tombstone = {"erased_at": NOW, "erased_by": "usr_1", "identity_hashes": ["h1"], "erased_messages": 3}
    result = apply_command(turn, EraseContact("e1", tombstone=tombstone))
    assert result.contact is stored and turn.contact is stored
    assert "legacy_note" not in stored and "phone" not in stored and "variables" in stored
    assert set(stored) <= KNOWN
    assert set(stored) == set(TOMBSTONE_KEEPS) | {
        "merged_into",
        "runs",
        "timers",
        "outbox",
        "tags",
        "variables",
    } | set(tombstone)
    assert stored["lease_epoch"] == 7 and stored["erased_at"] == NOW


def test_a_stored_contact_enters_a_turn_once_checked_as_the_same_document() -> None:
    raw: dict[str, Any] = dict(contact())
    assert as_contact(raw) is raw  # no copy: a load decodes enough


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("version", None, "version is None, expected int"),
        ("workspace_id", 7, "workspace_id is 7, expected str"),
        ("_id", None, "_id is None, expected str"),
    ],
)
def test_a_stored_contact_without_an_id_a_workspace_or_a_version_is_refused_naming_what_is_wrong(
    key: str, value: Any, said: str
) -> None:
    raw: dict[str, Any] = dict(contact())
    if value is None:
        del raw[key]
    else:
        raw[key] = value
    with pytest.raises(ValueError, match=said) as refused:
        as_contact(raw)
    if key != "_id":
        assert "ws_unit:+34600111222" in str(refused.value)
