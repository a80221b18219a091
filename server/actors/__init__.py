"""The actor system: one virtual actor per contact (mailbox, one event at a time, CAS commit),
its events, the effects performed after a commit, arq timers and recovery.

May import: machines, store, channels (the Channel protocol), clock, errors, ids.
"""
