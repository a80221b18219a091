"""Use cases shared by every entry point (GraphQL, webhooks, CLI): flows, contacts, conversations.

They validate input, talk to repositories and hand contact events to the actor system.
May import: store, actors, machines, channels, segments, errors. Never graphql or app.
"""
