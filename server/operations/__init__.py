"""Use cases shared by every entry point (GraphQL, webhooks, CLI): flows, contacts, conversations,
catalog, channels, workspaces.

Each module declares what it uses as a ``Protocol`` named for its use case (``TagServices``,
``FlowVersionServices``...): read-only properties for the few members of ``Services``
(``server/services.py``) its functions read, extending the protocols of the use cases it calls.
Its functions take that protocol, never the whole ``Services``; callers pass the one ``Services``
the composition root built, which satisfies every protocol structurally, and mypy holds each
function to the members its protocol lists (``tests/unit/test_explicit_dependencies.py``).

They validate input, talk to repositories and hand contact events to the actor system.
Layer 5. May import: services, actors, machines, sending, segments, integrations, channels,
store and the ground floor. Never graphql, web or the composition root (``runtime``).
"""
