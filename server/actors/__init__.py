"""The actor system: one virtual actor per contact (mailbox, one event at a time, one CAS commit
per turn), its events, the effects performed after a commit (sends, timers, news to subscribers),
arq timers, shard leases and recovery; the agent picker the ``assign`` node asks inside a turn.

Layer 4 (below use cases, above the pure machines). May import: machines, sending, store,
channels, and the ground floor (cancellation, clock, documents, errors, ids, identity, packing). Never
operations, triggers, graphql, services, runtime or web.
"""
