"""The channel cache on the real store: concurrent askers share one lookup, ``forget`` wins races."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.runtime import Runtime
from tests.integration.conftest import WORKSPACE
from tests.support.timing import until


class CountingLookups:
    """Counts the router's store lookups of a workspace's channel; ``gate`` holds them back."""

    def __init__(self, runtime: Runtime) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._real = runtime.channels.for_workspace
        runtime.channels.for_workspace = self  # type: ignore[method-assign]

    async def __call__(self, workspace_id: str) -> dict[str, Any] | None:
        self.calls += 1
        await self.gate.wait()
        return await self._real(workspace_id)


async def test_concurrent_askers_share_one_lookup_then_the_cache(runtime: Runtime) -> None:
    lookups = CountingLookups(runtime)
    lookups.gate.clear()
    askers = [asyncio.create_task(runtime.channel.channel_for(WORKSPACE)) for _ in range(20)]
    await until(lambda: lookups.calls == 1, "the askers joined the lookup, which began")
    lookups.gate.set()
    assert await asyncio.gather(*askers) == [None] * 20  # no number connected: the sandbox
    await runtime.channel.channel_for(WORKSPACE)
    assert lookups.calls == 1


async def test_a_cancelled_asker_does_not_cancel_the_others_lookup(runtime: Runtime) -> None:
    lookups = CountingLookups(runtime)
    lookups.gate.clear()
    first = asyncio.create_task(runtime.channel.channel_for(WORKSPACE))
    second = asyncio.create_task(runtime.channel.channel_for(WORKSPACE))
    await until(lambda: lookups.calls == 1, "the askers joined the lookup, which began")
    first.cancel()
    lookups.gate.set()
    assert await second is None
    with pytest.raises(asyncio.CancelledError):
        await first
    assert lookups.calls == 1


async def test_a_lookup_begun_before_forget_is_not_cached(runtime: Runtime) -> None:
    lookups = CountingLookups(runtime)
    lookups.gate.clear()
    stale = asyncio.create_task(runtime.channel.channel_for(WORKSPACE))
    await until(lambda: lookups.calls == 1, "the askers joined the lookup, which began")
    runtime.channel.forget(WORKSPACE)  # a number was connected meanwhile
    lookups.gate.set()
    await stale
    await runtime.channel.channel_for(WORKSPACE)
    assert lookups.calls == 2  # the answer read before the change was not kept
