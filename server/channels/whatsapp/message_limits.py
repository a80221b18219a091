"""WhatsApp's limits on what a simple message may carry, defined once.

The flow validator reports a node that breaks one (naming the node), and the payload builder
refuses what still slips through at send time (a placeholder that rendered long, a flow
published before a check existed): both read these numbers, so they never disagree.

Sources: Meta's Cloud API message reference, developers.facebook.com/documentation/
business-messaging/whatsapp/messages/ (interactive reply-button, list, CTA URL, location-request,
media-carousel and Flow messages), summarised in the repository's conformance notes
(``tests/conformance/README.md``, "WhatsApp 2026").
"""

from __future__ import annotations

MAX_TEXT = 4096  # a text message's body
MAX_CAPTION = 1024  # a media caption
MAX_INTERACTIVE_BODY = 1024  # the body of any interactive message

# Reply buttons
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256

# List messages: rows in sections, opened by a button
MAX_LIST_ROWS = 10  # in all sections together
MAX_LIST_SECTIONS = 10
MAX_LIST_BUTTON = 20
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_ROW_ID = 200
MAX_SECTION_TITLE = 24

# CTA URL messages (also a carousel card's URL button)
MAX_LINK_TITLE = 20  # display_text

# Media carousels: 2-10 cards, each an image or video header, optional body, and either one URL
# button or quick-reply buttons (the same kind and number on every card).
MIN_CAROUSEL_CARDS = 2
MAX_CAROUSEL_CARDS = 10
MAX_CARD_BODY = 160
MAX_CARD_BODY_LINE_BREAKS = 2
MAX_CARD_REPLIES = 2  # Meta's quick-reply example shows two per card; providers document two at most
CAROUSEL_MEDIA = ("image", "video")

# WhatsApp Flows (interactive type ``flow``)
MAX_FLOW_CTA = 30
FLOW_MESSAGE_VERSION = "3"

# Media a message with buttons or a link can show as its header (not audio).
HEADER_MEDIA = ("image", "video", "document")
