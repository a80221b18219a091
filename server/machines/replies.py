"""What a customer's message means to a message node that waits: the reply rules, defined once.

Pure: the runner asks :func:`choose` with the node's buttons (id and the title the customer
sees), what the customer sent and which reply edges the node has; the answer says which path
the run takes. The rules (documented with examples in ``docs/flows.md``):

1. a tap on one of the node's buttons (a list's rows, a carousel's quick replies) follows it;
2. typed text equal to a button's title -- ignoring case, accents, punctuation, emoji and
   surrounding spaces -- or to its number in the list (``1``, ``2``, ...) follows that button
   (a title several buttons share, like "Lo quiero" on every carousel card, chooses none);
3. any other text follows ``on_reply`` when the node has one, else ``on_other`` when it has one;
4. otherwise nothing is chosen: the run stays at the node (the runner re-prompts once with the
   buttons and records why).

A tap on a button the node does not have (an older message's) counts as typing its title.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from server.machines.values import fold

_PUNCTUATION = re.compile(r"[^\w\s]")

Path = Literal["button", "on_reply", "on_other", "none"]
MatchedBy = Literal["tap", "title", "number"]


def comparable(text: str) -> str:
    """``"¡Sí,  QUIERO!"`` -> ``"si quiero"``: the form titles, keywords and messages are compared in.

    Case and accents are folded (NFKD, combining marks dropped), punctuation and symbols (emoji
    included) become spaces, and runs of spaces collapse.
    """
    return " ".join(_PUNCTUATION.sub(" ", fold(text)).split())


@dataclass(frozen=True)
class Choice:
    """Where a message leads: ``button`` (with its id and how it matched), an edge, or ``none``."""

    path: Path
    button: str | None = None
    matched_by: MatchedBy | None = None


def choose(
    buttons: Sequence[tuple[str, str | None]],
    text: str | None,
    button_id: str | None,
    on_reply: bool,
    on_other: bool,
) -> Choice:
    """Apply the reply rules; ``buttons`` are ``(id, title)`` in the order the customer sees them."""
    ids = [button for button, _ in buttons]
    if button_id is not None and button_id in ids:
        return Choice("button", button_id, "tap")
    said = comparable(text) if text else ""
    if said:
        matching = [button for button, title in buttons if title and comparable(title) == said]
        if len(matching) == 1:  # a title several buttons share (carousel cards) names none of them
            return Choice("button", matching[0], "title")
        if said.isdigit() and said.isascii() and 1 <= int(said) <= len(buttons):
            return Choice("button", buttons[int(said) - 1][0], "number")
    if text is None and button_id is None:
        return Choice("none")  # not a text at all (media, location...): not an answer to choose with
    if on_reply:
        return Choice("on_reply")
    if on_other:
        return Choice("on_other")
    return Choice("none")
