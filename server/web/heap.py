"""The garbage collector's settings for a serving process.

Measured on P1 (issue 19): cyclic garbage collection took ~14 % of the served process's CPU,
most of it in full collections that walked the ~180,000 objects startup leaves behind (modules,
the GraphQL schema, compiled flows) although none of them ever becomes garbage. Once the server
listens, those objects are moved out of the collector's sight (``gc.freeze``) and young
collections run less often, so objects of requests still in flight are promoted (and walked
again by every later collection) less often.
"""

from __future__ import annotations

import gc

# Young-generation threshold (CPython's default 700): each collection also walks every survivor,
# and at hundreds of requests in flight 700 allocations is a fraction of one request's objects.
YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> None:
    """Call once the server is up: startup's objects leave the collector's view for good."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
