"""The WhatsApp Business Cloud API channel: webhook verification and parsing, outbound requests to the
Graph API (or a provider exposing the same API), the shared throughput limiter, template submission.

May import: store (repositories), egress, clock, errors, ids, identity, json_limits, window. The
HTTP webhook route is an edge: ``server/web/whatsapp.py``.
"""
