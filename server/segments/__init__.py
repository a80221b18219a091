"""Segment language: validation, a MongoDB filter compiler and an in-memory evaluator that agree.

Used by condition nodes, broadcasts and the ``contacts(segment:)`` query. Layer 3 (pure).
May import only ``server.durations`` and ``server.errors``.
"""

from server.segments.evaluate import matches
from server.segments.language import validate_segment
from server.segments.mongo import to_mongo_filter

__all__ = ["matches", "to_mongo_filter", "validate_segment"]
