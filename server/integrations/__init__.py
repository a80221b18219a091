"""Clients of external systems that flows update (Klaviyo profiles and others).

``klaviyo.py`` is I/O (layer 2): May import egress, errors, clock. ``klaviyo_sync.py`` feeds the
actors like a channel does (layer 4): it also imports actors and store, handing results back to
contacts as actor events.
"""
