"""Helpers every HTTP/WebSocket edge of the server shares (input limits checked before parsing)."""
