"""Compiled machines per published flow version: built once, shared by every run of that version."""

from __future__ import annotations

from collections import OrderedDict

from server.errors import NotFound
from server.machines.compiler import CompiledFlow, compile_flow
from server.machines.definition import parse_flow
from server.store.flows import FlowRepository


class FlowCache:
    """Versions never change once published, so entries never go stale; LRU bounds memory."""

    def __init__(self, flows: FlowRepository, capacity: int = 512) -> None:
        self._flows = flows
        self._capacity = capacity
        self._compiled: OrderedDict[tuple[str, int], CompiledFlow] = OrderedDict()

    async def get(self, flow_id: str, version: int) -> CompiledFlow:
        key = (flow_id, version)
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            return compiled
        document = await self._flows.get_version(flow_id, version)
        if document is None:
            raise NotFound(f"flow {flow_id} has no version {version}")
        compiled = compile_flow(parse_flow(document["definition"]))
        self._compiled[key] = compiled
        if len(self._compiled) > self._capacity:
            self._compiled.popitem(last=False)
        return compiled
