"""Mutation testing of the critical modules with mutmut (``./scripts/mutation``)."""
