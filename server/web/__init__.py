"""The edges: everything that speaks HTTP or WebSocket. The Starlette app (``app``), the GraphQL
HTTP/WebSocket handler (``graphql_view``) and the operator endpoint (``operator``), the WhatsApp
webhook (``whatsapp``), trigger hooks (``hooks``), ``/metrics`` (``metrics``) and the middleware and
input limits every edge shares (``body_limit``, ``json_limits``).

May import: everything below it (graphql, operations, triggers, the composition root ``runtime``).
Nothing below the edges imports this package.
"""
