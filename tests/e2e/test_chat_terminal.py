"""``konvo chat`` in a real terminal (a pty, driven by pexpect) against the real server process and
its seeded demo: the history shows on opening, a template shows its header, body, footer and
buttons, and typing a button's number presses it (issue 14, items 8 and 11)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import pexpect
import pytest

from tests.conftest import ServiceURLs
from tests.e2e.conftest import ServedProcess
from tests.e2e.servers import KONVO, replicas

pytestmark = pytest.mark.e2e

SAY = "mutation($p: String!, $t: String) { sandboxInbound(phone: $p, text: $t) }"


@pytest.fixture(scope="module")
def server(services: ServiceURLs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    with replicas(services, tmp_path_factory.mktemp("chat")) as (served,):
        yield served


def graphql(server: ServedProcess, query: str, **variables: object) -> dict[str, object]:
    response = httpx.post(
        f"{server.base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=30,
    )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def open_chat(server: ServedProcess, phone: str, *options: str) -> pexpect.spawn:
    chat = pexpect.spawn(
        KONVO,
        ["chat", phone, "--url", server.base_url, "--api-key", server.api_key, *options],
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    chat.logfile_read = sys.stdout  # shown by pytest when the test fails
    return chat


def expect_lines(chat: pexpect.spawn, *lines: str) -> None:
    """Each line, in order, as a whole line of the terminal."""
    for line in lines:
        chat.expect_exact(line + "\r\n")


def test_the_demo_in_a_terminal_template_buttons_by_number_and_history(server: ServedProcess) -> None:
    phone = "+34600000000"
    chat = open_chat(server, phone)
    try:
        expect_lines(
            chat, f"chatting as {phone}. Type a message, a button's number to press it, /quit to leave."
        )
        expect_lines(chat, "(no messages yet)")
        chat.sendline("hola")
        expect_lines(
            chat,
            "bot: *¡Bienvenido a Demo shop!*",
            "  Hola 👋 Soy el asistente de la tienda. El envío es gratis en pedidos desde 50 €. "
            "¿En qué te ayudamos?",
            "  _Responde con el número de una opción_",
            "  See all options:",
            "  1. Mi pedido",
            "  2. Ver ofertas",
            "  3. Hablar con Ana",
            "  - Visitar la tienda: https://shop.example/ofertas (link)",
            "  - Copiar código: HOLA10 (copy)",
        )
        chat.sendline("1")  # a press of "Mi pedido", not the text "1"
        expect_lines(chat, "you pressed: Mi pedido", "bot: ¿Cuál es tu número de pedido?")
        chat.sendline("3")  # a number, but this question has no buttons: the text "3", no press
        expect_lines(chat, "bot: ¿Qué día lo hiciste? (por ejemplo, 24/12/2026)")
        chat.sendline("24/12/2026")
        expect_lines(chat, "bot: Anotado: pedido 3 del 24/12/2026 (jueves).", "bot: ¿Cómo te llamas?")
        chat.sendline("Lucía")
        expect_lines(chat, "bot: Gracias, Lucía. Ana te atiende en un momento.")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0

    contact = graphql(server, "query($p: String!) { contact(phone: $p) { tags agent { email } } }", p=phone)
    assert contact["contact"] == {"tags": ["needs-follow-up"], "agent": {"email": "ana@shop.example"}}
    inbound = graphql(
        server,
        "query($p: String!) { conversation(phone: $p) { messages { direction text buttonId } } }",
        p=phone,
    )
    pressed = [m for m in inbound["conversation"]["messages"] if m["buttonId"]]  # type: ignore[index]
    assert pressed == [{"direction": "IN", "text": "Mi pedido", "buttonId": "order"}]

    # Opened again, the chat shows the conversation so far, the customer's side too.
    chat = open_chat(server, phone)
    try:
        expect_lines(chat, "you: hola", "bot: *¡Bienvenido a Demo shop!*")
        expect_lines(chat, "you pressed: Mi pedido", "bot: ¿Cuál es tu número de pedido?", "you: 3")
        expect_lines(chat, "bot: Gracias, Lucía. Ana te atiende en un momento.")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)


def test_a_chat_opened_after_the_flow_wrote_shows_it_and_presses_its_buttons(server: ServedProcess) -> None:
    phone = "+34600000009"
    graphql(server, SAY, p=phone, t="ofertas")  # the flow writes before the chat is open
    chat = open_chat(server, phone)
    try:
        expect_lines(
            chat,
            "you: ofertas",
            "bot: ¿Quieres recibir nuestras ofertas por WhatsApp?",
            "  [1] Sí, quiero",
            "  [2] No, gracias",
        )
        chat.sendline("2")
        expect_lines(chat, "you pressed: No, gracias")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    tags = graphql(server, "query($p: String!) { contact(phone: $p) { tags } }", p=phone)
    assert json.dumps(tags) == json.dumps({"contact": {"tags": ["no-marketing"]}})


def test_a_customer_without_a_phone_number_chats_by_bsuid(server: ServedProcess) -> None:
    """A WhatsApp user who adopted a username and shares no number: the sandbox plays them by BSUID."""
    bsuid = "ES.40219375509914732216"
    chat = open_chat(server, bsuid, "--username", "@lucia")
    try:
        expect_lines(
            chat, f"chatting as {bsuid}. Type a message, a button's number to press it, /quit to leave."
        )
        expect_lines(chat, "(no messages yet)")
        chat.sendline("ofertas")
        expect_lines(chat, "bot: ¿Quieres recibir nuestras ofertas por WhatsApp?", "  [1] Sí, quiero")
        chat.sendline("1")
        expect_lines(chat, "you pressed: Sí, quiero")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    found = graphql(
        server, "query($w: String!) { contact(whatsappId: $w) { phone bsuid username optedIn } }", w=bsuid
    )
    assert found["contact"] == {"phone": None, "bsuid": bsuid, "username": "@lucia", "optedIn": True}
