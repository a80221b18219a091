"""The GraphQL API (strawberry): schema, types, API-key auth context, error codes and the
Redis pub/sub that feeds subscriptions across processes.

May import: operations, store, machines, runtime, errors.
"""
