"""httpx's API over aiohttp's connection pool, with the egress policy's connect-time address pinning.

Why not httpx's own transport: its pool (httpcore) costs about 1.7 ms of CPU per outbound POST under
concurrency (it scans every connection for every request), more than issue 19's whole per-message
budget; aiohttp's pool costs about 0.2 ms. Product code keeps httpx's request/response API.

Pinning, as ``server/egress.py`` promises: aiohttp resolves a host name through a resolver it is
given (``_VettingResolver``), which resolves with the policy, refuses unless every address passes,
and hands back exactly the vetted addresses, which are what the connector connects to (TLS still
verifies the certificate against the name; SNI and ``Host`` are unchanged). aiohttp skips the
resolver for a literal address, so the transport vets a literal host itself before every request.
There is no DNS cache: each new connection resolves and vets again, so a name that answers
differently later (DNS rebinding) gains nothing. Cookies are never kept (one pool serves every
tenant).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from server.errors import EgressRefused

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Vetted:
    """Where a host may be reached, and whether an operator allowed it explicitly (plain http)."""

    addresses: tuple[Address, ...]
    explicit: bool


class Vetting(Protocol):
    """The egress policy as the transport asks it (``server.egress.EgressPolicy``, which builds
    its client on this transport)."""

    async def vet(self, host: str, port: int) -> Vetted: ...


log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class _VettingResolver(AbstractResolver):
    """aiohttp's resolver: the policy's resolution and check; only vetted addresses come back."""

    def __init__(self, policy: Vetting) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        try:
            vetted = await self._policy.vet(host, port)
        except EgressRefused as exc:
            log.info("egress refused for %s:%s at connect: %s", host.lower().rstrip("."), port, exc.reason)
            raise
        results: list[ResolveResult] = []
        for address in vetted.addresses:
            address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": address_family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise OSError(f"{host} has no address of the requested family")
        return results

    async def close(self) -> None:
        """Nothing held."""


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """aiohttp's failures as httpx's, so callers catch ``httpx.TransportError``/``TimeoutException``.

    The message is the exception's class name only: aiohttp's texts name the target address.
    """
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(type(exc).__name__) from exc
    except (TimeoutError, aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(type(exc).__name__) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(type(exc).__name__) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(type(exc).__name__) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(type(exc).__name__) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.NetworkError(type(exc).__name__) from exc


def _extensions(response: aiohttp.ClientResponse) -> dict[str, bytes]:
    return {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()}


@lru_cache(maxsize=1024)
def _is_literal(host: str) -> bool:
    try:
        ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class PinnedTransport(httpx.AsyncBaseTransport):
    """One aiohttp keep-alive pool (``limits``), opened on first use inside the running loop."""

    def __init__(self, policy: Vetting, limits: httpx.Limits) -> None:
        self._policy = policy
        self._limits = limits
        self._ssl = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE/SSL_CERT_DIR when set
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_VettingResolver(self._policy),
                use_dns_cache=False,
                ssl=self._ssl,
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        if _is_literal(host):  # aiohttp connects to a literal address without asking the resolver
            await self._policy.vet(host, request.url.port or 0)
        body = await request.aread()
        timeout = request.extensions.get("timeout", {})
        with _mapped_errors():
            response = await self._open().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        length = response.content_length
        if length is not None and length <= _CHUNK:
            # A small answer of known length (every Graph API reply) is read here at once: streaming
            # it through httpx's iterators cost more CPU than the request itself.
            with _mapped_errors():
                content = await response.read()
            return httpx.Response(
                status_code=response.status,
                headers=response.raw_headers,
                content=content,
                request=request,
                extensions=_extensions(response),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            request=request,
            extensions=_extensions(response),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
