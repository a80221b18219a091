"""A minimal ``graphql-transport-ws`` client over the real ``websockets`` library."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


class GraphQLWebSocket:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.connection: Any = None

    async def __aenter__(self) -> GraphQLWebSocket:
        self.connection = await websockets.connect(self.url, subprotocols=["graphql-transport-ws"])
        await self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {self.api_key}"}})
        ack = await self.receive()
        assert ack["type"] == "connection_ack", ack
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def subscribe(self, operation_id: str, query: str, **variables: Any) -> None:
        await self.send(
            {"id": operation_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )

    async def next_data(self, operation_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next ``next`` payload of ``operation_id`` (pings are answered, others skipped)."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            if message.get("id") != operation_id:
                continue
            assert message["type"] == "next", message
            assert not message["payload"].get("errors"), message
            return message["payload"]["data"]
