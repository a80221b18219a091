"""How messages leave and enter the product: the Channel protocol and its send codes, the channel
router, the sandbox channel and the WhatsApp Cloud API channel (Graph API client, throughput
limiter, pair pacing, webhook parsing) with the WhatsApp formats it shares with the validator
(message limits, template messages and parameters, WhatsApp Flows answers, the rate card).

Layer 2 (I/O). May import: store, egress and the ground floor (clock, errors, ids, identity,
expiring, json_limits, window). Never machines, actors, use cases or edges; the HTTP webhook
route is an edge (``server/web/whatsapp.py``).
"""
