"""Ways a flow starts besides the API: webhook triggers (``POST /hooks/{id}``, routed by
``server/web/hooks.py``), inbound keyword triggers, and broadcasts to a segment (with the
per-process broadcast runner, started by the composition root through ``services.py``).
Like ``operations``, each module takes a ``Protocol`` of the services it reads (``BroadcastServices``,
``HookReceiveServices``...), never the whole ``Services``.

Layer 5 (use cases). May import: services, operations, actors, machines, sending, segments,
channels (rate card), store and the ground floor. Never graphql, web or ``runtime``.
"""
