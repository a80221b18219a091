"""The egress policy's rules on their own: which addresses lead inside, the allow setting, URL forms."""

from __future__ import annotations

from ipaddress import ip_address

import httpx
import pytest
from pydantic import ValidationError

from server.config import Settings
from server.egress import EgressAllowList, EgressPolicy, address_problem, never_sent, same_origin
from server.errors import EgressRefused
from tests.support.network import HostsResolver

INSIDE = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",  # shared address space (carrier NAT)
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",  # documentation
]
OUTSIDE = ["8.8.8.8", "157.240.1.1", "2a03:2880:f10c:83:face:b00c:0:25de", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", INSIDE)
def test_addresses_that_lead_inside_are_named(address: str) -> None:
    assert address_problem(ip_address(address)) is not None


@pytest.mark.parametrize("address", OUTSIDE)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ip_address(address)) is None


def test_the_allow_setting_takes_names_and_networks_and_names_a_bad_entry() -> None:
    allow = EgressAllowList.parse(" LocalHost., 10.0.0.0/8 ,[::1], bsp.internal,,")
    assert allow.hosts == {"localhost", "bsp.internal"}
    assert allow.covers(ip_address("10.9.8.7")) and allow.covers(ip_address("::1"))
    assert allow.covers(ip_address("::ffff:10.0.0.1"))  # the mapped form of an allowed address
    assert not allow.covers(ip_address("11.0.0.1"))
    with pytest.raises(ValueError, match="'http://x' is neither"):
        EgressAllowList.parse("localhost, http://x")
    with pytest.raises(ValidationError, match="KONVO_EGRESS_ALLOW"):
        Settings(egress_allow="10.0.0.0/33")


async def test_a_host_is_refused_when_any_of_its_addresses_leads_inside() -> None:
    names = HostsResolver({"mixed.test": ["8.8.8.8", "10.0.0.1"], "public.test": ["8.8.8.8"]})
    policy = EgressPolicy(EgressAllowList(), names)
    with pytest.raises(EgressRefused) as caught:
        await policy.vet("mixed.test", 443)
    assert "10.0.0.1" in caught.value.reason and "10.0.0.1" not in caught.value.message
    vetted = await policy.vet("public.test", 443)
    assert [str(a) for a in vetted.addresses] == ["8.8.8.8"] and not vetted.explicit
    allowing = EgressPolicy(EgressAllowList.parse("mixed.test"), names)
    assert (await allowing.vet("mixed.test", 443)).explicit  # an operator's name covers its addresses
    with pytest.raises(OSError):
        await policy.vet("nowhere.test", 443)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@8.8.8.8/",
        "https://:pw@8.8.8.8/",
        "https://user@8.8.8.8/",
        "ftp://8.8.8.8/",
        "ws://8.8.8.8/",
        "https:///path",
        "//8.8.8.8/",
    ],
)
def test_url_forms_other_than_plain_https_and_http_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy().parse(url)


async def test_plain_http_only_to_an_allowed_destination() -> None:
    names = HostsResolver({"public.test": ["8.8.8.8"], "bsp.internal": ["10.0.0.7"]})
    policy = EgressPolicy(EgressAllowList.parse("bsp.internal, 192.0.2.0/24"), names)
    with pytest.raises(EgressRefused):
        await policy.check_url("http://public.test/", "baseUrl")
    await policy.check_url("https://public.test/", "baseUrl")
    await policy.check_url("http://bsp.internal:8080/", "baseUrl")
    await policy.check_url("http://192.0.2.9/", "baseUrl")


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin("https://graph.facebook.com/v23.0/1", "https://GRAPH.facebook.com:443/x?y")
    assert not same_origin("https://graph.facebook.com/", "http://graph.facebook.com/")
    assert not same_origin("https://graph.facebook.com/", "https://graph.facebook.com:8443/")
    assert not same_origin("https://graph.facebook.com/", "https://graph.facebook.com.evil.test/")


@pytest.mark.parametrize(
    ("error", "unsent"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("no pooled connection in time"), True),
        (httpx.PoolTimeout("pool"), True),
        (httpx.ReadTimeout("written, no answer in time"), False),
        (httpx.WriteTimeout("partly written"), False),
        (httpx.RemoteProtocolError("dropped"), False),
        (httpx.ReadError("reset"), False),
        (httpx.NetworkError("other"), False),
    ],
)
def test_only_failures_before_the_request_was_written_count_as_never_sent(
    error: httpx.TransportError, unsent: bool
) -> None:
    assert never_sent(error) is unsent
