"""Use cases shared by every entry point (GraphQL, webhooks, CLI): flows, contacts, conversations,
catalog, channels, workspaces. Each takes the ``Services`` (``server/services.py``) it works with.

They validate input, talk to repositories and hand contact events to the actor system.
Layer 5. May import: services, actors, machines, sending, segments, integrations, channels,
store and the ground floor. Never graphql, web or the composition root (``runtime``).
"""
