"""Development-only code: the embedded store and Redis (``konvo serve`` without a MongoDB/Redis
URI), the demo workspace and its example flows (``seed``), and the terminal chat (``konvo chat``).

Nothing of the server imports this package but the CLI, the tests and the benchmarks.
May import: anything of the server (it drives the whole process, like the CLI).
"""
