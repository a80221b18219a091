"""Marketing consent by API, and the workspace's own opt-out words.

Consent given or withdrawn is recorded on the contact with when, how (``api``, ``flow``,
``keyword``, ``import``) and by whom (the API key, an agent). Customers opt out by writing
only STOP or BAJA, or one of the workspace's words, in any case and with or without accents
(see ``contact_state.opt_out_word``); marketing templates then stop (``send_nodes.send_template``).
"""

from __future__ import annotations

from typing import Protocol

from server.actors.contact_actor import event_id
from server.actors.events import SetConsent
from server.documents import ContactDoc
from server.errors import InvalidInput
from server.machines.contact_state import DEFAULT_OPT_OUT_WORDS
from server.machines.values import fold
from server.operations.contact_identifiers import IdentifierServices, Who, contact_key
from server.services import ActorsHandle
from server.store.workspace_settings import WorkspaceSettingsRepository
from server.workspace_gate import SETTINGS, WorkspaceGate

OPT_OUT_SETTING = "opt_out_keywords"  # in the workspace's settings (store/workspace_settings.py)
MAX_WORDS = 50
MAX_WORD = 40


class ConsentServices(IdentifierServices, Protocol):
    """What consent by API and the opt-out words use."""

    @property
    def actors(self) -> ActorsHandle: ...

    @property
    def workspace_gate(self) -> WorkspaceGate: ...

    @property
    def workspace_settings(self) -> WorkspaceSettingsRepository: ...


async def set_opt_in(
    services: ConsentServices,
    workspace_id: str,
    who: Who,
    opted_in: bool,
    by: str | None = None,
    key_id: str | None = None,
) -> ContactDoc:
    key = await contact_key(services, workspace_id, who)
    event = SetConsent(event_id(), bool(opted_in), source="api", by=by, key_id=key_id)
    return (await services.actors.ask(key, event)).contact


async def opt_out_keywords(services: ConsentServices, workspace_id: str) -> list[str]:
    """The workspace's own words (STOP and BAJA always apply on top of them)."""
    settings = await services.workspace_settings.get(workspace_id)
    return list(settings.get(OPT_OUT_SETTING) or [])


def checked_opt_out_keywords(words: list[str], field: str = "words") -> list[str]:
    """The words as stored: trimmed, single-spaced, without defaults or repeats (by folded form)."""
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"{field}: at most {MAX_WORDS} opt-out words", field=field)
    cleaned: list[str] = []
    seen = {fold(w) for w in DEFAULT_OPT_OUT_WORDS}
    for word in words:
        value = " ".join(str(word).split())
        if not value or len(value) > MAX_WORD:
            raise InvalidInput(
                f"{field}: opt-out words are 1 to {MAX_WORD} characters: {word!r}", field=field
            )
        if fold(value) in seen:
            continue  # a default, or the same word with other accents/case
        seen.add(fold(value))
        cleaned.append(value)
    return cleaned


async def set_opt_out_keywords(services: ConsentServices, workspace_id: str, words: list[str]) -> list[str]:
    cleaned = checked_opt_out_keywords(words)
    await services.workspace_settings.set(workspace_id, OPT_OUT_SETTING, cleaned)
    await services.workspace_gate.changed(workspace_id, SETTINGS)  # every process re-reads them
    return cleaned
