"""The one way out: every outbound HTTP request of the server passes this policy.

Tenants choose URLs (a provider's Graph API base URL, Klaviyo's base URL) and remote services
hand us more (Meta's ``paging.next``). Without a policy such a request could reach the server's
own network -- databases, admin ports on loopback, cloud metadata at 169.254.169.254 -- with a
tenant's token attached, and the answer would come back to the tenant. So:

- only ``https`` (plain ``http`` only to destinations an operator allowed), no ``user:pw@``;
- the host is resolved and *every* address must be public: loopback, private, link-local,
  multicast, unspecified, reserved and shared addresses are refused, also when an IPv6 address
  wraps an IPv4 one (IPv4-mapped/compatible, 6to4, Teredo, NAT64);
- the check runs when a connection is opened: the transport under httpx (``egress_transport.py``)
  resolves, vets and connects to the vetted address itself (TLS still verifies the host name, SNI
  and ``Host`` are unchanged), so a name that answers differently the second time (DNS
  rebinding) gains nothing;
- redirects are followed only within the same origin; callers do the same for ``paging.next``;
- operators allow hosts or networks with ``KONVO_EGRESS_ALLOW`` (host names and CIDRs, comma
  separated). The embedded dev setup and the tests allow loopback through that same setting.

A refusal is ``EgressRefused`` with a fixed message; its ``reason`` goes to the log only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import httpx

from server.egress_transport import Address, PinnedTransport, Vetted
from server.errors import EgressRefused

log = logging.getLogger(__name__)

Network = IPv4Network | IPv6Network
# (host, port) -> the addresses the host resolves to, as strings; raises OSError when it does not.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"https": 443, "http": 80}
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), each address once, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressAllowList:
    """What an operator lets the server call beyond the public internet (``KONVO_EGRESS_ALLOW``)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> EgressAllowList:
        """``"localhost, 10.0.0.0/8, ::1, bsp.internal"``; raises ValueError naming a bad entry."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for raw in (text or "").split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _HOSTNAME.fullmatch(entry):
                raise ValueError(
                    f"KONVO_EGRESS_ALLOW: {raw.strip()!r} is neither a host name nor an address or "
                    "network (CIDR such as 10.0.0.0/8)"
                )
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def names(self, host: str) -> bool:
        return _host_key(host) in self.hosts

    def covers(self, address: Address) -> bool:
        """The address, or the IPv4 address an IPv4-mapped one stands for, is in an allowed network."""
        candidates: list[Address] = [address]
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(candidate in network for candidate in candidates for network in self.networks)


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _literal(host: str) -> Address | None:
    try:
        return ip_address(_host_key(host))
    except ValueError:
        return None


def _checked(allow: EgressAllowList, host: str, addresses: list[Address]) -> Vetted:
    """``host``'s addresses if every one may be called (allowed, or public); else EgressRefused."""
    named = allow.names(host)
    for address in addresses:
        if named or allow.covers(address):
            continue
        problem = address_problem(address)
        if problem is not None:
            raise EgressRefused(f"{_host_key(host)} resolves to a {problem}")
    return Vetted(tuple(addresses), named or all(allow.covers(a) for a in addresses))


@lru_cache(maxsize=1024)
def _literal_vetted(allow: EgressAllowList, host: str) -> Vetted | None:
    """A literal address's verdict (None for a host name). Nothing is resolved, so the verdict
    never changes: it is worked out once per allow list and host, not before every request to
    that address (the transport vets a literal host each time). Refusals raise and are not kept."""
    literal = _literal(host)
    return None if literal is None else _checked(allow, host, [literal])


@lru_cache(maxsize=4096)
def _parsed(url: str) -> httpx.URL:
    """httpx parses a URL in Python, character by character (~0.1 ms): the same few URLs (a
    channel's messages endpoint) are parsed once. ``httpx.URL`` is immutable, so sharing is safe."""
    return httpx.URL(url)


def _embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: mapped, compatible, 6to4, Teredo and NAT64 forms."""
    found: list[IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    value = int(address)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d, the deprecated IPv4-compatible form
        found.append(IPv4Address(value))
    if any(address in network for network in _NAT64):
        found.append(IPv4Address(value & 0xFFFFFFFF))
    return found


def _plain_problem(address: Address) -> str | None:
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


def address_problem(address: Address) -> str | None:
    """Why the server must not call this address (None for a public one)."""
    candidates: list[Address] = [address]
    if isinstance(address, IPv6Address):
        candidates += _embedded_ipv4(address)
    for candidate in candidates:
        problem = _plain_problem(candidate)
        if problem is not None:
            return f"{problem} address {candidate}"
    return None


def host_of(url: httpx.URL) -> str:
    """The host as it is resolved and connected to (IDNA-encoded, brackets of IPv6 removed)."""
    return url.raw_host.decode("ascii")


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """Scheme, host and port (default ports filled in): what "the same origin" compares."""
    return url.scheme, _host_key(host_of(url)), url.port or _DEFAULT_PORTS.get(url.scheme, 0)


def same_origin(url: httpx.URL | str, other: httpx.URL | str) -> bool:
    return origin(httpx.URL(url)) == origin(httpx.URL(other))


def printable_origin(url: httpx.URL) -> str:
    """For the log: never the path or query (Meta's ``paging.next`` carries the access token)."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


@dataclass
class EgressPolicy:
    """The rules above, with the resolver passed in (tests answer names from a table of their own)."""

    allow: EgressAllowList = field(default_factory=EgressAllowList)
    resolver: Resolver = system_resolver

    async def vet(self, host: str, port: int) -> Vetted:
        """Resolve ``host`` and check every address; OSError when it does not resolve."""
        vetted = _literal_vetted(self.allow, host)
        if vetted is not None:
            return vetted
        addresses = [ip_address(a) for a in await self.resolver(host, port)]
        if not addresses:
            raise OSError(f"{host} has no address")
        return _checked(self.allow, host, addresses)

    def parse(self, url: httpx.URL | str, field: str | None = None) -> httpx.URL:
        """The URL's form: http(s), a host, no credentials. The addresses are checked later."""
        try:
            parsed = url if isinstance(url, httpx.URL) else _parsed(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise EgressRefused("not a URL", field) from None
        if parsed.scheme not in _DEFAULT_PORTS:
            raise EgressRefused(f"scheme {parsed.scheme!r}", field)
        if parsed.userinfo:
            raise EgressRefused("credentials in the URL", field)
        if not parsed.host:
            raise EgressRefused("no host", field)
        return parsed

    async def check_url(self, url: str, field: str) -> httpx.URL:
        """Configuration time (``connectWhatsApp``, ``setKlaviyoSettings``): the URL's form and its
        host's addresses now; a host that does not resolve is refused too (the same answer as a
        private one, so the check cannot be used to map internal names)."""
        parsed = self.parse(url, field)
        try:
            vetted = await self.vet(host_of(parsed), origin(parsed)[2])
        except EgressRefused as exc:
            _log_refusal(parsed, exc.reason)
            raise EgressRefused(exc.reason, field) from None
        except (OSError, UnicodeError) as exc:
            _log_refusal(parsed, f"does not resolve ({type(exc).__name__})")
            raise EgressRefused("does not resolve", field) from None
        if parsed.scheme == "http" and not vetted.explicit:
            _log_refusal(parsed, "plain http to a destination not in KONVO_EGRESS_ALLOW")
            raise EgressRefused("plain http", field)
        return parsed

    async def check_request(self, url: httpx.URL | str) -> httpx.URL:
        """Request time: the URL's form, and for plain http that the destination is allowed. The
        addresses of an https host are checked when its connection opens (``PinnedTransport``)."""
        try:
            parsed = self.parse(url)
            if parsed.scheme == "http":
                try:
                    vetted = await self.vet(host_of(parsed), origin(parsed)[2])
                except (OSError, UnicodeError) as exc:
                    raise httpx.ConnectError(f"could not resolve the host ({type(exc).__name__})") from None
                if not vetted.explicit:
                    raise EgressRefused("plain http to a destination not in KONVO_EGRESS_ALLOW")
        except EgressRefused as exc:
            _log_refusal(url, exc.reason)
            raise
        return parsed


# Raised by EgressClient only before a byte of the request was written: no connection (refused,
# unresolvable, TLS), or none free in the pool in time (PinnedTransport maps aiohttp's pool wait and
# connect timeouts to ConnectTimeout; httpx's own pool says PoolTimeout). Every other failure --
# no answer in time, a dropped connection, a broken response -- may follow a request the server got.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def never_sent(exc: httpx.TransportError) -> bool:
    """True when the request certainly did not reach the server: repeating it cannot do it twice."""
    return isinstance(exc, _NEVER_SENT)


def _log_refusal(url: httpx.URL | str, reason: str) -> None:
    try:
        where = printable_origin(httpx.URL(url))
    except Exception:
        where = "an unparsable URL"
    log.info("egress refused for %s: %s", where, reason)


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing and adds nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Nothing kept: httpx would otherwise copy every response into urllib's cookie objects."""

    def set_cookie_header(self, request: httpx.Request) -> None:
        """Nothing added."""


class _CookielessClient(httpx.AsyncClient):
    """httpx's client without its cookie jar: one client serves every tenant, so a cookie one
    tenant's host set must never travel with another's request (the aiohttp pool under it keeps
    none either); and parsing each answer for cookies cost ~0.1 ms of CPU per request."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the egress client keeps no cookies")


_NO_COOKIES = _NoCookies()


class EgressClient:
    """An ``httpx.AsyncClient`` bound to the policy; the only HTTP client product code uses.

    Environment proxies and ``.netrc`` are ignored (a proxy would resolve names itself and
    ``.netrc`` would hand credentials to tenant hosts); redirects are followed by hand, only
    within the origin of the request; no cookies are kept.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        timeout: httpx.Timeout,
        limits: httpx.Limits | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._policy = policy
        self._http = _CookielessClient(
            transport=PinnedTransport(policy, limits or httpx.Limits()),
            timeout=timeout,
            headers=headers,
            trust_env=False,
            follow_redirects=False,
        )

    async def request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """Send one request; EgressRefused when the URL, a connection or a redirect is refused.

        Transport problems raise httpx's ``TransportError``/``TimeoutException`` as usual;
        ``never_sent`` tells those after which the server certainly has nothing.
        """
        target = await self._policy.check_request(url)
        response = await self._http.request(method, target, **kwargs)
        for _ in range(MAX_REDIRECTS):
            following = response.next_request
            if following is None:
                return response
            await response.aclose()
            if not same_origin(following.url, target):
                _log_refusal(following.url, f"redirect from {printable_origin(target)}")
                raise EgressRefused("a redirect to another origin")
            await self._policy.check_request(following.url)
            response = await self._http.send(following)
        if response.next_request is not None:
            await response.aclose()
            raise EgressRefused("too many redirects")
        return response

    async def aclose(self) -> None:
        await self._http.aclose()
