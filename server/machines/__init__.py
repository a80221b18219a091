"""Flow definitions (pydantic), the validator, the compiler to shared ``transitions`` machines,
the catalog a flow is checked against and the node behaviour that decides what a run does.
Pure: no I/O, no store, no network.

Layer 3. May import: segments, the pure WhatsApp formats of ``channels.whatsapp`` (message limits,
template messages, form answers) and the ground floor (clock, documents, durations, errors, ids,
identity, window). Never store, actors or anything above.
"""
