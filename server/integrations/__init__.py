"""Clients of external systems that flows update (Klaviyo profiles and others).

May import: errors, clock (and httpx); the sync modules (``*_sync.py``) also actors and store,
like a channel: they hand results back to contacts as actor events.
"""
