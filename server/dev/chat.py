"""``konvo chat PHONE|BSUID``: play the customer of the sandbox channel from a terminal, through the API.

A BSUID (``US.13491208655302741918``) plays a customer who adopted a WhatsApp username and shares
no phone number: the sandbox reports them as WhatsApp would, by BSUID (and ``--username``).

On opening, the conversation so far is printed (the customer's messages and what flows and
agents wrote). What you type is sent with ``sandboxInbound``; a ``contactUpdated`` subscription
(``graphql-transport-ws``) says when the contact changed, and the new messages are printed as
WhatsApp shows them (the server's ``rendered`` form: template header, body, footer, every
button). Quick replies are numbered (a list's rows and a carousel's quick replies too): typing a
number presses that button, as a tap would (its id and title); the other buttons (link, call, copy
code, send location, open form) are shown with what they hold. ``/location LAT,LNG [name]`` shares
a location (the answer to a location request) and ``/form {json}`` sends a WhatsApp Flow's answer.
What the customer sent is shown too (a location, a reaction, a quoted message).
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

from server.identity import BSUID, bsuid_kind

HISTORY = 50  # messages printed when the chat opens
CONVERSATION = """query($p: String!, $n: Int!) { conversation(whatsappId: $p) { messages(last: $n) {
  id direction sender status error kind text buttonId quoted { text }
  rendered { text replies { title id number } } } } }"""
SAY = """mutation($p: String!, $u: String, $t: String, $b: String, $l: LocationInput, $f: JSON) {
  sandboxInbound(phone: $p, username: $u, text: $t, buttonId: $b, location: $l, flowResponse: $f) }"""
SAY_AS_BSUID = """mutation($p: String!, $u: String, $t: String, $b: String, $l: LocationInput, $f: JSON) {
  sandboxInbound(bsuid: $p, username: $u, text: $t, buttonId: $b, location: $l, flowResponse: $f) }"""
HELP = "/location LAT,LNG [name] shares a location, /form {json} answers a form."
WATCH = "subscription($p: String!) { contactUpdated(whatsappId: $p) { version } }"
WHO = {"AGENT": "agent", "FLOW": "bot", "SYSTEM": "bot", "CUSTOMER": "you"}


class ChatError(Exception):
    """Something the person must fix (unreachable server, bad key); printed without a traceback."""


class Chat:
    def __init__(
        self, url: str, api_key: str, phone: str, out: TextIO = sys.stdout, username: str | None = None
    ) -> None:
        """``phone``: the customer's phone number, or their BSUID (a customer without one)."""
        self.http_url = url.rstrip("/") + "/graphql"
        self.ws_url = "ws" + self.http_url.removeprefix("http")
        self.api_key = api_key
        self.phone = phone
        self.username = username
        self._say = SAY_AS_BSUID if bsuid_kind(phone.strip()) == BSUID else SAY
        self.out = out
        self.seen: set[str] = set()
        # The quick replies of the latest message from the business: what a typed number presses.
        self.buttons: dict[int, dict[str, Any]] = {}
        self.http = httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        self._opened = asyncio.Event()  # the history is printed: live messages may follow
        self._printing = asyncio.Lock()

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

    async def messages(self, last: int) -> list[dict[str, Any]]:
        conversation = (await self.graphql(CONVERSATION, p=self.phone, n=last))["conversation"]
        return conversation["messages"] if conversation else []

    async def show_history(self) -> int:
        """Print the conversation so far, oldest first; returns how many messages it had."""
        async with self._printing:
            messages = await self.messages(HISTORY)
            for message in messages:
                self.seen.add(message["id"])
                self.show(message)
            self._opened.set()
            return len(messages)

    async def show_new_messages(self) -> None:
        """Print what the business wrote since, not shown yet (what you typed is on screen already)."""
        await self._opened.wait()
        async with self._printing:
            for message in await self.messages(HISTORY):
                if message["id"] in self.seen:
                    continue
                self.seen.add(message["id"])
                if message["direction"] == "OUT":
                    self.show(message)

    def show(self, message: dict[str, Any]) -> None:
        """One message: ``who: first line``, the rest indented; remembers numbered buttons."""
        if message["direction"] == "IN":
            pressed = message.get("buttonId")
            text = message.get("text") or pressed or (message.get("rendered") or {}).get("text") or ""
            self.say(f"you pressed: {text}" if pressed else f"you: {text}")
            quoted = (message.get("quoted") or {}).get("text")
            if quoted and not pressed:
                self.say(f"  (replying to: {quoted.splitlines()[0]})")
            return
        rendered = message.get("rendered") or {}
        lines = (rendered.get("text") or message.get("text") or "").splitlines() or [""]
        who = WHO.get(message.get("sender") or "FLOW", "bot")
        if message.get("status") == "failed":
            who = f"{who} (not delivered: {message.get('error') or 'failed'})"
        self.say(f"{who}: {lines[0]}")
        for line in lines[1:]:
            self.say(f"  {line}")
        # A number typed now answers this message: a question without buttons ("¿Cuántas?") must
        # get the text "1", not a press of an older message's button.
        self.buttons = {b["number"]: b for b in rendered.get("replies") or []}

    async def send(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text.startswith(("/location", "/form")):
            await self.share(text)
            return
        button = self.buttons.get(int(text)) if text.isdigit() else None
        if button is not None:
            # A tap, as WhatsApp reports it: the button's id and its title.
            await self.graphql(self._say, p=self.phone, u=self.username, t=button["title"], b=button["id"])
            self.say(f"you pressed: {button['title']}")
        else:
            await self.graphql(self._say, p=self.phone, u=self.username, t=text, b=None)

    async def share(self, command: str) -> None:
        """``/location 40.41,-3.70 Sol`` or ``/form {"email": "ana@example.com"}``."""
        name, _, rest = command.partition(" ")
        if name == "/form":
            try:
                answer = json.loads(rest or "{}")
            except ValueError as exc:
                raise ChatError(f"/form takes a JSON object of the form's fields: {exc}") from None
            await self.graphql(SAY, p=self.phone, f=answer)
            self.say("you sent the form")
            return
        where, _, place = rest.strip().partition(" ")
        try:
            latitude, longitude = (float(part) for part in where.split(","))
        except ValueError:
            raise ChatError(
                "/location takes LAT,LNG and an optional name: /location 40.4168,-3.7038 Sol"
            ) from None
        location = {"latitude": latitude, "longitude": longitude, "name": place.strip() or None}
        await self.graphql(SAY, p=self.phone, l=location)
        self.say(f"you shared a location: {latitude}, {longitude}")

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
            await self.messages(1)  # a bad key or URL is reported before anything else
            ready = asyncio.Event()
            watcher = asyncio.create_task(self.watch(ready))
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait({watcher, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                waiting.cancel()
                await watcher  # raises why it stopped
            self.say(
                f"chatting as {self.phone}. Type a message, a button's number to press it, /quit to leave."
            )
            self.say(HELP)
            if not await self.show_history():
                self.say("(no messages yet)")
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


async def chat(url: str, api_key: str, phone: str, username: str | None = None) -> None:
    read_line = stdin_reader()
    await Chat(url, api_key, phone, username=username).run(read_line)
