"""``konvo chat PHONE``: play the customer of the sandbox channel from a terminal, through the API.

What you type is sent with ``sandboxInbound``; a ``contactUpdated`` subscription
(``graphql-transport-ws``) says when the contact changed, and the new messages of
``sandboxOutbox`` are printed with their buttons numbered: typing a number presses that button.
Only the public API is used, so it works against any server you have a key for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import httpx
import websockets

OUTBOX = """query($p: String!) { sandboxOutbox(phone: $p) {
  id kind text buttons { id title } media template } }"""
SAY = (
    """mutation($p: String!, $t: String, $b: String) { sandboxInbound(phone: $p, text: $t, buttonId: $b) }"""
)
WATCH = "subscription($p: String!) { contactUpdated(phone: $p) { version } }"


class ChatError(Exception):
    """Something the person must fix (unreachable server, bad key); printed without a traceback."""


class Chat:
    def __init__(self, url: str, api_key: str, phone: str, out: TextIO = sys.stdout) -> None:
        self.http_url = url.rstrip("/") + "/graphql"
        self.ws_url = "ws" + self.http_url.removeprefix("http")
        self.api_key = api_key
        self.phone = phone
        self.out = out
        self.seen: set[str] = set()
        self.buttons: list[dict[str, str]] = []
        self.http = httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        try:
            response = await self.http.post(self.http_url, json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise ChatError(f"cannot reach {self.http_url}: {exc}") from None
        body = response.json()
        if body.get("errors"):
            raise ChatError("; ".join(e.get("message", "?") for e in body["errors"]))
        return body["data"]

    async def show_new_messages(self) -> None:
        """Print outbound messages not shown yet, oldest first; remember the last buttons."""
        messages = (await self.graphql(OUTBOX, p=self.phone))["sandboxOutbox"]
        for message in messages:
            if message["id"] in self.seen:
                continue
            self.seen.add(message["id"])
            self.say(f"bot: {describe(message)}")
            if message["buttons"]:
                self.buttons = message["buttons"]
                for number, button in enumerate(self.buttons, start=1):
                    self.say(f"  [{number}] {button['title']}")

    async def send(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text.isdigit() and 1 <= int(text) <= len(self.buttons):
            button = self.buttons[int(text) - 1]
            await self.graphql(SAY, p=self.phone, t=None, b=button["id"])
            self.say(f"you pressed: {button['title']}")
        else:
            await self.graphql(SAY, p=self.phone, t=text, b=None)

    async def watch(self, ready: asyncio.Event) -> None:
        """Follow the contact; each change may have produced messages to show."""
        try:
            async with websockets.connect(self.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {self.api_key}"}}
                await ws.send(json.dumps(init))
                ack = json.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    raise ChatError(f"the server refused the subscription: {ack}")
                subscribe = {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": WATCH, "variables": {"p": self.phone}},
                }
                await ws.send(json.dumps(subscribe))
                ready.set()
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    elif message["type"] == "next":
                        await self.show_new_messages()
                    elif message["type"] in ("error", "complete"):
                        raise ChatError(f"subscription ended: {message.get('payload')}")
        except (OSError, websockets.WebSocketException) as exc:
            raise ChatError(f"lost the connection to {self.ws_url}: {exc}") from None

    async def run(self, read_line: Callable[[], Any]) -> None:
        """Chat until end of input (Ctrl-D) or ``/quit``."""
        try:
            messages = (await self.graphql(OUTBOX, p=self.phone))["sandboxOutbox"]
            self.seen.update(m["id"] for m in messages)
            ready = asyncio.Event()
            watcher = asyncio.create_task(self.watch(ready))
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait({watcher, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                waiting.cancel()
                await watcher  # raises why it stopped
            self.say(
                f"chatting as {self.phone} ({len(messages)} earlier messages). "
                "Type a message, a button's number to press it, /quit to leave."
            )
            await self.show_new_messages()
            try:
                while True:
                    reading = asyncio.ensure_future(read_line())
                    await asyncio.wait({reading, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if watcher.done():
                        reading.cancel()
                        await watcher
                    line = await reading
                    if not line or line.strip() == "/quit":
                        break
                    try:
                        await self.send(line)
                    except ChatError as exc:
                        self.say(f"! {exc}")
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, ChatError):
                    await watcher
        finally:
            await self.http.aclose()


def describe(message: dict[str, Any]) -> str:
    """One line for an outbound message: its text, or what kind of thing was sent."""
    if message.get("text"):
        return message["text"]
    if message.get("template"):
        template = message["template"]
        name = template.get("name") if isinstance(template, dict) else template
        return f"(template {name})"
    if message.get("media"):
        media = message["media"]
        caption = media.get("caption") or media.get("url") if isinstance(media, dict) else media
        return f"({message.get('kind', 'media')}: {caption})"
    return f"({message.get('kind', 'message')})"


def stdin_reader() -> Callable[[], Any]:
    """Lines from stdin without blocking the event loop.

    A daemon thread reads (works for a terminal, a pipe or a file and, unlike an asyncio pipe
    reader, leaves the terminal in blocking mode); it never keeps the process alive at exit.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        for line in iter(sys.stdin.readline, ""):
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return lines.get


async def chat(url: str, api_key: str, phone: str) -> None:
    read_line = stdin_reader()
    await Chat(url, api_key, phone).run(read_line)
