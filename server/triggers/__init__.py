"""Ways a flow starts besides the API: webhook triggers (``POST /hooks/{id}``, routed by
``server/web/hooks.py``), inbound keyword triggers, and broadcasts to a segment (with the
per-process broadcast runner, started by the composition root through ``services.py``).

Layer 5 (use cases). May import: services, operations, actors, machines, sending, segments,
channels (rate card), store and the ground floor. Never graphql, web or ``runtime``.
"""
