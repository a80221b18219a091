"""Konvo Flows server."""
