"""Ways a flow starts besides the API: webhook triggers (``POST /hooks/{id}``), inbound keyword
triggers, and broadcasts to a segment (with the per-process broadcast runner).

May import: actors, machines, operations, segments, store (repositories), channels' rate card,
clock, errors, ids, phones. The services only as a type (it builds ``TriggerServices``).
"""
