"""Flow definitions (pydantic), the validator, the compiler to shared ``transitions`` machines
and the node behaviour that decides what a run does. Pure: no I/O, no store, no network.

May import: errors, ids, clock, segments.
"""
