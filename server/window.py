"""WhatsApp's 24-hour customer service window: free-form messages may be sent only while it is open.

The customer's last inbound message opens it for 24 hours; outside it only approved templates go.
One pure module, read by the runner, the validator, the send policy, the channels, the API and
broadcasts, so that every one of them draws the line at the same instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.clock import as_utc

WINDOW = timedelta(hours=24)


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Open while less than ``WINDOW`` has passed since the customer's last inbound message."""
    return last_inbound_at is not None and now - as_utc(last_inbound_at) < WINDOW
