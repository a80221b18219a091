"""The WhatsApp Business Cloud API channel: webhook verification and parsing, outbound requests to the
Graph API (or a provider exposing the same API), the shared throughput limiter, template submission.

May import: store (repositories), actors (events), clock, errors, ids, phones. ``ingress.py`` is the
HTTP edge (like graphql/): it also uses the runtime and operations (``channel_inbound``).
"""
