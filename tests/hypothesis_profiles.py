"""Hypothesis profiles: explicit, and with an example database that keeps what was once found.

* ``dev`` (default): 100 examples per property, failures saved locally under
  ``.hypothesis/examples`` and replayed on the next run.
* ``ci`` (``CI=true``): the same, but nothing is written (a clean clone has no local database);
  a failure prints its reproduction blob (``print_blob``) to paste into ``@reproduce_failure``.
Both replay the committed examples in ``tests/hypothesis-examples/`` first. ``HYPOTHESIS_PROFILE``
picks another registered profile; ``thorough`` runs 1,000 examples for a search on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)

ROOT = Path(__file__).resolve().parents[1]
KEPT = ReadOnlyDatabase(DirectoryBasedExampleDatabase(ROOT / "tests" / "hypothesis-examples"))
LOCAL = DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples")

COMMON = {
    "deadline": None,  # the store and the server answer in variable time on a loaded machine
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("dev", max_examples=100, database=MultiplexedDatabase(LOCAL, KEPT), **COMMON)
settings.register_profile("ci", max_examples=100, database=KEPT, **COMMON)
settings.register_profile("thorough", max_examples=1000, database=MultiplexedDatabase(LOCAL, KEPT), **COMMON)


def load() -> None:
    default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))
