"""Server-side request forgery through tenant-chosen URLs (issue 15, finding 2), probed as an attacker
would: every target is a loopback listener that counts the connections it gets.

Runtimes here resolve names from a table of their own (``HostsResolver``) so a name can be made to
point anywhere (and to change its answer) without DNS; "strict" runtimes leave
``KONVO_EGRESS_ALLOW`` unset, as production does.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.clock import SystemClock
from server.config import Settings
from server.egress import EgressAllowList, EgressPolicy
from server.errors import EgressRefused
from server.ids import new_id
from server.integrations.klaviyo import KlaviyoClient, KlaviyoError, KlaviyoSettings
from server.runtime import Runtime
from server.store.channels import new_channel
from tests.integration.conftest import WORKSPACE, client_for, make_workspace
from tests.support.graphql import GraphQLClient, GraphQLErrors
from tests.support.listeners import Answer, Listener, json_answer
from tests.support.network import LOOPBACK_ALLOW, HostsResolver
from tests.support.whatsapp import FAST_RETRIES

CONNECT = "mutation($i: ConnectWhatsAppInput!) { connectWhatsApp(input: $i) { id baseUrl } }"
KLAVIYO = "mutation($k: String, $u: String) { setKlaviyoSettings(privateKey: $k, baseUrl: $u) { baseUrl } }"
SYNC = "mutation { syncTemplates { name } }"
TEMPLATES = "{ templates { name } }"
TOKEN = "EAAB-tenant-token"
REMOTE = {"name": "internal_report", "language": "en", "status": "APPROVED", "category": "UTILITY"}


def graph_page(name: str = "internal_report", following: str | None = None) -> dict[str, Any]:
    """A Graph API template list page: what an internal service would have to look like to be read back."""
    page: dict[str, Any] = {
        "data": [{**REMOTE, "name": name, "id": new_id("m"), "components": [{"type": "BODY", "text": "hi"}]}]
    }
    if following:
        page["paging"] = {"next": following}
    return page


def answering(page: dict[str, Any]) -> Callable[[str, str, dict[str, str]], Answer]:
    return lambda method, path, headers: json_answer(200, page)


def connect_input(base_url: str) -> dict[str, Any]:
    return {
        "phoneNumberId": f"pn{new_id('x')[-8:]}",
        "wabaId": "2222",
        "accessToken": TOKEN,
        "appSecret": "app-secret",
        "baseUrl": base_url,
    }


async def configured_earlier(runtime: Runtime, base_url: str) -> None:
    """A channel stored before the policy existed (or by a bug): the call itself must still be refused."""
    await runtime.channels.insert(
        new_channel(
            channel_id=new_id("chn"),
            workspace_id=WORKSPACE,
            phone_number_id=f"pn{new_id('x')[-8:]}",
            waba_id="2222",
            verify_token="v",
            app_secret="s",
            access_token=TOKEN,
            base_url=base_url,
            created_at=SystemClock().now(),
        )
    )
    runtime.channel.forget(WORKSPACE)


async def refused(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    with pytest.raises(GraphQLErrors) as caught:
        await gql(query, **variables)
    [error] = caught.value.errors
    assert error["extensions"]["code"] == "EGRESS_REFUSED", error
    return error


Make = Callable[..., Awaitable[tuple[Runtime, GraphQLClient]]]


@pytest.fixture
async def make(fast_settings: Settings) -> AsyncIterator[Make]:
    """Runtimes with a chosen ``KONVO_EGRESS_ALLOW`` and resolver."""
    made: list[tuple[Runtime, GraphQLClient]] = []

    async def build(egress_allow: str | None, resolver: Any = None) -> tuple[Runtime, GraphQLClient]:
        settings = fast_settings.model_copy(update={"egress_allow": egress_allow})
        runtime = Runtime(settings, resolver=resolver or HostsResolver())
        await runtime.start()
        gql = client_for(runtime, await make_workspace(runtime))
        runtime.graph.policy = FAST_RETRIES
        made.append((runtime, gql))
        return runtime, gql

    yield build
    for runtime, gql in made:
        await gql.http.aclose()
        await runtime.stop()


@pytest.fixture
async def listeners() -> AsyncIterator[Callable[..., Awaitable[Listener]]]:
    started: list[Listener] = []

    async def start(*args: Any, **kwargs: Any) -> Listener:
        listener = await Listener(*args, **kwargs).start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        await listener.stop()


@pytest.mark.parametrize("allow", [None, LOOPBACK_ALLOW], ids=["production", "loopback-allowed"])
async def test_a_loopback_service_is_reached_only_when_the_operator_allows_loopback(
    make: Make, listeners: Callable[..., Awaitable[Listener]], allow: str | None
) -> None:
    service = await listeners(handler=answering(graph_page()))
    runtime, gql = await make(allow)
    if allow is None:
        error = await refused(gql, CONNECT, i=connect_input(service.url()))
        assert error["extensions"]["field"] == "baseUrl" and error["message"].startswith("baseUrl: ")
        await configured_earlier(runtime, service.url())
        await refused(gql, SYNC)
        assert service.connections == 0
        assert (await gql(TEMPLATES))["templates"] == []
    else:
        await gql(CONNECT, i=connect_input(service.url()))
        assert (await gql(SYNC))["syncTemplates"] == [{"name": "internal_report"}]
        assert service.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_every_way_of_naming_an_inside_address_is_refused(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    service = await listeners(handler=answering(graph_page()))
    port = service.port
    names = HostsResolver({"inside.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]})
    runtime, gql = await make(None, names)
    urls = [
        f"http://127.0.0.1:{port}",
        f"https://127.0.0.1:{port}",
        f"https://127.1.2.3:{port}",
        f"https://[::1]:{port}",
        f"https://[::ffff:127.0.0.1]:{port}",  # IPv4-mapped
        f"https://[::ffff:7f00:1]:{port}",  # the same, written in hex
        f"https://[::127.0.0.1]:{port}",  # IPv4-compatible
        f"https://[2002:7f00:1::1]:{port}",  # 6to4 of 127.0.0.1
        f"https://[64:ff9b::7f00:1]:{port}",  # NAT64 of 127.0.0.1
        f"https://localhost:{port}",
        f"https://LOCALHOST.:{port}",
        f"https://inside.test:{port}",  # a name that resolves to 127.0.0.1
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254",
        "https://metadata.test",
        "https://[fe80::1]",
        "https://10.0.0.5",
        "https://192.168.1.1",
        "https://100.64.0.1",
        "https://[fd00::1]",
        "https://0.0.0.0",
        "https://224.0.0.1",
        "https://240.0.0.1",
        f"https://user:pw@localhost:{port}",
        "https://user:pw@graph.example.com",
        "https://nowhere.test",  # does not resolve: refused the same way, so names cannot be probed
        "ftp://graph.example.com",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "not a url",
    ]
    messages = set()
    for url in urls:
        error = await refused(gql, CONNECT, i=connect_input(url))
        assert error["extensions"] == {"code": "EGRESS_REFUSED", "field": "baseUrl"}, url
        await refused(gql, KLAVIYO, k="pk_live_x", u=url)
        messages.add(error["message"])
    assert len(messages) == 1 and str(port) not in next(iter(messages))  # one answer for every reason
    assert service.connections == 0
    assert await runtime.channels.for_workspace(WORKSPACE) is None


async def test_credentials_in_a_url_are_refused_even_where_loopback_is_allowed(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    service = await listeners(handler=answering(graph_page()))
    runtime, gql = await make(LOOPBACK_ALLOW)
    await refused(gql, CONNECT, i=connect_input(service.url().replace("://", "://user:pw@")))
    await configured_earlier(runtime, service.url().replace("://", "://user:pw@"))
    await refused(gql, SYNC)
    assert service.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_an_address_stored_earlier_is_refused_when_the_call_is_made(
    make: Make, listeners: Callable[..., Awaitable[Listener]], host: str
) -> None:
    """An https URL naming an address is never resolved, so the transport checks the address itself."""
    service = await listeners(handler=answering(graph_page()))
    runtime, gql = await make(None)
    await configured_earlier(runtime, f"https://{host}:{service.port}")
    await refused(gql, SYNC)
    assert service.connections == 0


class Rebinding(HostsResolver):
    """Answers ``rebind.test`` with an allowed address first and with 127.0.0.1 from then on."""

    async def __call__(self, host: str, port: int) -> list[str]:
        if host == "rebind.test":
            self.asked.append(host)
            return ["127.0.0.2"] if len(self.asked) == 1 else ["127.0.0.1"]
        return await super().__call__(host, port)


async def test_a_name_that_changes_its_answer_is_checked_again_when_connecting(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    service = await listeners(handler=answering(graph_page()))
    resolver = Rebinding()
    _, gql = await make("127.0.0.2/32", resolver)
    await gql(CONNECT, i=connect_input(f"https://rebind.test:{service.port}"))  # checked: 127.0.0.2
    await refused(gql, SYNC)  # at connect time it says 127.0.0.1
    assert resolver.asked == ["rebind.test", "rebind.test"]
    assert service.connections == 0


def certificate_for(host: str, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_the_connection_goes_to_the_vetted_address_with_the_name_kept_for_tls_and_host(
    make: Make,
    listeners: Callable[..., Awaitable[Listener]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pinned.test`` exists only in the runtime's resolver: the request can only have reached the
    listener through the vetted address, and TLS verified the certificate against the name."""
    cert, key = certificate_for("pinned.test", tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_side.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,return-value]
    service = await listeners(handler=answering(graph_page()), ssl_context=server_side)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate, for this name
    _, gql = await make("pinned.test", HostsResolver({"pinned.test": ["127.0.0.1"]}))
    await gql(CONNECT, i=connect_input(f"https://pinned.test:{service.port}"))
    assert (await gql(SYNC))["syncTemplates"] == [{"name": "internal_report"}]
    assert sni == ["pinned.test"]
    assert service.requests[0].headers["host"] == f"pinned.test:{service.port}"


async def test_redirects_are_followed_only_within_the_origin(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    inside = await listeners(handler=answering(graph_page("stolen")))
    target = {"location": ""}

    def redirecting(method: str, path: str, headers: dict[str, str]) -> Answer:
        if path.startswith("/page"):
            return json_answer(200, graph_page("followed"))
        return 302, {"Location": target["location"]}, b""

    api = await listeners(handler=redirecting)
    _, gql = await make("api.test", HostsResolver({"api.test": ["127.0.0.1"]}))
    await gql(CONNECT, i=connect_input(f"http://api.test:{api.port}"))
    for location in (inside.url(), inside.url("localhost"), f"http://api.test:{inside.port}/", "/page"):
        target["location"] = location
        if location == "/page":  # the same origin: followed
            assert (await gql(SYNC))["syncTemplates"] == [{"name": "followed"}]
        else:
            await refused(gql, SYNC)
    assert inside.connections == 0


async def test_paging_next_is_followed_only_within_the_origin(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    inside = await listeners(handler=answering(graph_page("stolen")))
    first = await listeners()
    _, gql = await make(LOOPBACK_ALLOW)  # even a host the operator allows is not a next page
    await gql(CONNECT, i=connect_input(first.url()))
    for elsewhere in (
        inside.url() + "/next?x=1",
        inside.url("localhost"),
        f"http://localhost:{first.port}/p",
    ):
        first.handler = answering(graph_page("first", following=elsewhere))
        await refused(gql, SYNC)
    assert inside.connections == 0 and first.connections == 3
    assert (await gql(TEMPLATES))["templates"] == []  # nothing half-read was imported
    first.handler = lambda method, path, headers: json_answer(
        200,
        graph_page("second")
        if "after" in path
        else graph_page("first", following=first.url() + "/p?after=1"),
    )
    assert {t["name"] for t in (await gql(SYNC))["syncTemplates"]} == {"first", "second"}


@pytest.mark.parametrize("behaviour", ["closed", "silent", "banner", "hang"])
async def test_a_failing_sync_says_nothing_about_the_target(
    make: Make, listeners: Callable[..., Awaitable[Listener]], behaviour: str
) -> None:
    """Closed, open-and-closing, non-HTTP and hanging ports all answer the same; nothing names them."""
    target = await listeners(behaviour)
    _, gql = await make(LOOPBACK_ALLOW)
    await gql(CONNECT, i=connect_input(target.url()))
    with pytest.raises(GraphQLErrors) as caught:
        await gql(SYNC)
    [error] = caught.value.errors
    assert error["extensions"] == {"code": "UNAVAILABLE", "remoteCode": "UNREACHABLE"}
    assert error["message"] == (
        "could not read templates from the WhatsApp API: the WhatsApp API could not be reached "
        "(gave up for now; will try again later)"
    )


async def test_a_remote_error_body_never_reaches_the_caller(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    marker = "INTERNAL-MARKER db_password=hunter2"
    bodies = [
        (500, {"detail": marker}),
        (400, {"error": {"message": marker, "code": 100, "error_data": {"details": marker}}}),
        (404, {"error": marker}),
    ]
    service = await listeners(handler=lambda *_: json_answer(*bodies[0]))
    _, gql = await make(LOOPBACK_ALLOW)
    await gql(CONNECT, i=connect_input(service.url()))
    seen = []
    for status, body in bodies:
        service.handler = lambda *_, status=status, body=body: json_answer(status, body)
        with pytest.raises(GraphQLErrors) as caught:
            await gql(SYNC)
        seen.append(caught.value.errors[0])
    assert all(marker not in str(error) and "hunter2" not in str(error) for error in seen)
    assert [e["extensions"]["remoteCode"] for e in seen] == ["HTTP_500", "100", "HTTP_404"]


async def test_klaviyo_calls_pass_the_same_policy(listeners: Callable[..., Awaitable[Listener]]) -> None:
    service = await listeners(
        handler=lambda *_: json_answer(400, {"errors": [{"detail": "INTERNAL-MARKER"}]})
    )
    strict = KlaviyoClient(EgressPolicy(EgressAllowList(), HostsResolver()), backoff=0.01)
    allowed = KlaviyoClient(
        EgressPolicy(EgressAllowList.parse(LOOPBACK_ALLOW), HostsResolver()), backoff=0.01
    )
    try:
        with pytest.raises(KlaviyoError) as caught:
            await strict.import_profile(KlaviyoSettings("pk_x", service.url()), "+34600700001", {"a": 1})
        assert not caught.value.retryable and caught.value.message == EgressRefused("").message
        assert service.connections == 0
        with pytest.raises(KlaviyoError) as answered:
            await allowed.import_profile(KlaviyoSettings("pk_x", service.url()), "+34600700001", {"a": 1})
        assert answered.value.message == "Klaviyo answered 400" and service.connections == 1
    finally:
        await strict.aclose()
        await allowed.aclose()


async def test_a_cookie_one_host_sets_is_never_sent_back(
    make: Make, listeners: Callable[..., Awaitable[Listener]]
) -> None:
    """One client serves every tenant: a cookie from an answer must not ride on the next request."""
    service = await listeners(
        handler=lambda *_: json_answer(200, graph_page(), {"Set-Cookie": "session=tenant-a; Path=/"})
    )
    _, gql = await make(LOOPBACK_ALLOW)
    await gql(CONNECT, i=connect_input(service.url()))
    for _ in range(2):
        assert (await gql(SYNC))["syncTemplates"] == [{"name": "internal_report"}]
    assert [request.headers.get("cookie") for request in service.requests] == [None, None]


@pytest.mark.parametrize("names", [1, 900], ids=["small-answer", "answer-over-64-KiB"])
async def test_answers_are_read_whole_whatever_their_size(
    make: Make, listeners: Callable[..., Awaitable[Listener]], names: int
) -> None:
    """Small answers are read at once by the transport, larger ones streamed: both arrive whole."""
    page = {"data": [{**graph_page(f"t{i:04d}_{'x' * 60}")["data"][0]} for i in range(names)]}
    assert (len(json.dumps(page)) > 64 * 1024) == (names > 1)
    service = await listeners(handler=answering(page))
    _, gql = await make(LOOPBACK_ALLOW)
    await gql(CONNECT, i=connect_input(service.url()))
    synced = (await gql(SYNC))["syncTemplates"]
    assert sorted(t["name"] for t in synced) == [f"t{i:04d}_{'x' * 60}" for i in range(names)]
