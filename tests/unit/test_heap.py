"""The serving process's collector settings (``server/web/heap.py``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from server.web.heap import YOUNG_THRESHOLD, settle_after_startup


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_startup_objects_leave_the_collector_and_young_collections_run_less_often(
    restored_collector: None,
) -> None:
    survivor = {"startup": [object() for _ in range(10)]}
    _, middle, old = gc.get_threshold()
    settle_after_startup()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert not any(obj is survivor for obj in gc.get_objects())  # frozen: no collection walks it
