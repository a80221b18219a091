"""Clients of external systems that flows update (Klaviyo profiles and others).

May import: errors, clock (and httpx).
"""
