"""The GraphQL API (strawberry): schema, types, API-key auth context, error codes and the
errors; subscriptions read the pub/sub of ``server/pubsub.py``.

May import: operations, store, machines, services, errors.
"""
