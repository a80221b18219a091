"""Helpers shared by the test suites (GraphQL client, polling, flow fixtures)."""
