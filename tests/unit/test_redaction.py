"""Which names are sensitive, and their values redacted in access-log paths and GraphQL operations."""

from __future__ import annotations

import logging

import pytest

from server.graphql.redaction import redacted_operation
from server.redaction import REDACTED, AccessLogRedaction, is_sensitive, redact_path, redact_value


@pytest.mark.parametrize(
    "name",
    [
        "accessToken",
        "access_token",
        "appSecret",
        "verifyToken",
        "hub.verify_token",
        "apiKey",
        "privateKey",
        "key",
        "password",
        "secret",
        "Authorization",
        "X-Hub-Signature-256",
        "clientCredentials",
    ],
)
def test_sensitive_names(name: str) -> None:
    assert is_sensitive(name)


@pytest.mark.parametrize("name", ["phone", "keywords", "baseUrl", "name", "keyword", "wabaId"])
def test_ordinary_names(name: str) -> None:
    assert not is_sensitive(name)


def test_values_under_sensitive_keys_are_redacted_at_any_depth() -> None:
    value = {"input": {"accessToken": "EAAB", "rows": [{"apiKey": "k", "name": "n"}]}, "phone": "+34"}
    assert redact_value(value) == {
        "input": {"accessToken": REDACTED, "rows": [{"apiKey": REDACTED, "name": "n"}]},
        "phone": "+34",
    }


def test_access_log_lines_lose_the_verify_token() -> None:
    path = "/webhooks/whatsapp/chn_1?hub.mode=subscribe&hub.verify_token=VERIFY-ME&hub.challenge=42"
    assert "VERIFY-ME" not in redact_path(path) and "hub.challenge=42" in redact_path(path)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", path, "1.1", 200),
        None,
    )
    assert AccessLogRedaction().filter(record)
    assert "VERIFY-ME" not in record.getMessage() and "GET /webhooks/whatsapp/chn_1?" in record.getMessage()


def test_operations_lose_literals_and_variables_of_sensitive_arguments() -> None:
    query = """mutation($i: ConnectWhatsAppInput!, $s: String, $n: String) {
      a: connectWhatsApp(input: $i) { id }
      b: connectWhatsApp(input: {accessToken: "EAAB-inline", wabaId: "w", list: [{privateKey: "pk"}]}) { id }
      createWebhookTrigger(flowId: "f", mapping: {phone: "p"}, secret: $s) { id }
      tagContact(phone: $n, tag: "vip") { id } }"""
    printed, variables = redacted_operation(
        query, None, {"i": {"accessToken": "EAAB-var", "wabaId": "w"}, "s": "trigger-secret", "n": "+34600"}
    )
    for secret in ("EAAB-inline", "EAAB-var", "trigger-secret", '"pk"'):
        assert secret not in printed + str(variables)
    assert variables == {"i": {"accessToken": REDACTED, "wabaId": "w"}, "s": REDACTED, "n": "+34600"}
    assert 'wabaId: "w"' in printed and 'tag: "vip"' in printed
    unparsable, nothing = redacted_operation(
        'mutation { connectWhatsApp(input: {accessToken: "EAAB-x"', None, {}
    )
    assert "EAAB" not in unparsable and nothing == {}
