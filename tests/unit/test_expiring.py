"""The expiring cache: entries are reused until they expire or are forgotten (the sharing of one
load by concurrent askers is tested through the channel router, on the real store)."""

from __future__ import annotations

from server.expiring import ExpiringCache


class Loads:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> int:
        self.count += 1
        return self.count


async def test_an_entry_is_reused_until_forgotten() -> None:
    cache: ExpiringCache[str, int] = ExpiringCache(ttl_seconds=3600)
    loads = Loads()
    assert [await cache.get("ws1", loads), await cache.get("ws1", loads)] == [1, 1]
    cache.forget("ws2")  # another key: ws1 stays
    assert await cache.get("ws1", loads) == 1
    cache.forget("ws1")
    assert await cache.get("ws1", loads) == 2
    cache.forget()  # everything
    assert await cache.get("ws1", loads) == 3


async def test_an_expired_entry_is_loaded_again() -> None:
    cache: ExpiringCache[str, int] = ExpiringCache(ttl_seconds=0)
    loads = Loads()
    assert [await cache.get("ws1", loads), await cache.get("ws1", loads)] == [1, 2]
