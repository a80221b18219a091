"""Logs never contain a secret (issue 15, finding 5): failing mutations written with inline literals
or variables, read back from the server's log.

Expected client errors are one line with their code and no traceback; an internal error logs its
traceback with the operation's sensitive arguments and variables redacted.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import strawberry

from server.graphql.errors import CodedErrors, CodedSchema
from server.runtime import Runtime
from tests.integration.conftest import client_for, make_workspace
from tests.support.graphql import GraphQLClient

SECRETS = [f"EAAB-log-secret-{n}" for n in range(12)]


def inline_connect(n: int, phone_number_id: str = "not an id!", extra: str = "") -> str:
    return (
        f'mutation {{ connectWhatsApp(input: {{phoneNumberId: "{phone_number_id}", wabaId: "w", '
        f'accessToken: "{SECRETS[n]}", appSecret: "{SECRETS[n]}-app", verifyToken: "{SECRETS[n]}-v"{extra}}}) '
        "{ id } }"
    )


VARIABLE_CONNECT = "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id } }"


def variables(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "i": {
            "phoneNumberId": "not an id!",
            "wabaId": "w",
            "accessToken": SECRETS[n],
            "appSecret": SECRETS[n],
            **changes,
        }
    }


async def codes(client: GraphQLClient, query: str, **variables: Any) -> list[str]:
    body = await client.raw(query, **variables)
    return [e["extensions"]["code"] for e in body.get("errors") or []]


async def test_failing_mutations_log_one_line_per_client_error_and_no_secret(
    gql: GraphQLClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    agent = client_for(runtime, await make_workspace(runtime, role="AGENT"))
    stranger = client_for(runtime, "konvo_not_a_key_0123456789")
    cases = [
        (gql, inline_connect(0), {}, "INVALID_INPUT"),
        (gql, VARIABLE_CONNECT, variables(1), "INVALID_INPUT"),
        # graphql-core's own message quotes the whole value here: it must not reach the log
        (gql, VARIABLE_CONNECT, variables(2, throughputPerSecond="many"), "INVALID_INPUT"),
        (gql, inline_connect(3, extra=", bogus: 1"), {}, "GRAPHQL_VALIDATION_FAILED"),
        (gql, inline_connect(4, extra=", throughputPerSecond: 1.5"), {}, "GRAPHQL_VALIDATION_FAILED"),
        (gql, inline_connect(5)[:-6], {}, "GRAPHQL_PARSE_FAILED"),
        (
            gql,
            f'mutation {{ setKlaviyoSettings(privateKey: "{SECRETS[6]}", baseUrl: "http://169.254.169.254") '
            "{ configured } }",
            {},
            "EGRESS_REFUSED",
        ),
        (
            gql,
            f'mutation {{ createWebhookTrigger(flowId: "nope", mapping: {{phone: "p"}}, secret: "{SECRETS[7]}") '
            "{ id } }",
            {},
            "NOT_FOUND",
        ),
        (
            gql,
            f'mutation {{ rotateWebhookTriggerSecret(id: "nope", secret: "{SECRETS[8]}") {{ id }} }}',
            {},
            "NOT_FOUND",
        ),
        (agent, inline_connect(9, phone_number_id="123"), {}, "FORBIDDEN"),
        (stranger, inline_connect(10, phone_number_id="123"), {}, "UNAUTHENTICATED"),
        (
            gql,
            'mutation($k: String) { setKlaviyoSettings(privateKey: $k, baseUrl: "https://user:pw@a.klaviyo.com") '
            "{ configured } }",
            {"k": SECRETS[11]},
            "EGRESS_REFUSED",
        ),
    ]
    for client, query, passed, expected in cases:
        caplog.clear()
        assert await codes(client, query, **passed) == [expected], query
        lines = [r for r in caplog.records if r.name.startswith(("server.graphql", "strawberry"))]
        assert [r.getMessage().split(" in ")[0] for r in lines] == [f"graphql {expected}"], query
        assert not any(r.exc_info for r in caplog.records), query  # no traceback for a client error
        assert "Traceback" not in caplog.text
        for secret in SECRETS:
            assert secret not in caplog.text, (query, caplog.text)
        assert "user:pw" not in caplog.text
    await agent.http.aclose()
    await stranger.http.aclose()


@strawberry.input
class ChannelInput:
    app_secret: str
    label: str


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Mutation:
    @strawberry.mutation
    def connect(
        self, access_token: str, channel: ChannelInput, note: str, other: str, memo: str | None = None
    ) -> bool:
        raise RuntimeError("the store went away")


async def test_an_internal_error_logs_its_traceback_with_sensitive_values_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The schema class the server uses, on a field that fails the way a bug would."""
    caplog.set_level(logging.INFO)
    schema = CodedSchema(query=Query, mutation=Mutation, extensions=[CodedErrors])
    result = await schema.execute(
        "mutation Connect($t: String!, $o: String!, $apiKey: String) { connect(accessToken: $t, "
        'channel: {appSecret: "inline-app-secret", label: "shop"}, note: "hello", other: $o, memo: $apiKey) }',
        variable_values={"t": "EAAB-variable-token", "o": "visible", "apiKey": "key-by-name"},
        operation_name="Connect",
    )
    assert result.errors and result.errors[0].message == "internal error"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info and "the store went away" in caplog.text and "Traceback" in caplog.text
    assert "graphql INTERNAL in Connect at connect" in record.getMessage()
    for secret in ("inline-app-secret", "EAAB-variable-token", "key-by-name"):
        assert secret not in caplog.text
    for kept in ("hello", "visible", "shop", "[redacted]"):
        assert kept in record.getMessage()
