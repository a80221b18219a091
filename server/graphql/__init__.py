"""The GraphQL API (strawberry): schema, types, resolvers, API-key context, roles and error codes.
Resolvers call use cases with ``info.context.services``; the HTTP/WebSocket handling of the API is
an edge (``server/web/graphql_view.py``).

Layer 6. May import: operations, triggers, services, store, machines, sending, channels, pubsub,
workspace_gate and the ground floor. Never web or the composition root (``runtime``).
"""
