"""Keep tests that call arbitrary mutations on loopback.

Generic tests (fuzzing, isolation) may connect a WhatsApp number or Klaviyo with made-up
settings and then trigger a call to it. Every HTTP client of the product is httpx, which honours
the proxy variables: pointing them at a closed loopback port makes any non-loopback request
fail at once, while loopback (``NO_PROXY``) keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

CLOSED_PORT_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, CLOSED_PORT_PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost,::1")
    yield
