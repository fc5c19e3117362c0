from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from herald.callback_urls import AddressNotAllowed, CallbackPolicy, GuardedResolver, validate
from herald.errors import InvalidRequest

PRODUCTION = CallbackPolicy()
DEVELOPMENT = CallbackPolicy(allow_private=True)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/cb", "callback_url_not_allowed"),
        ("https://localhost/cb", "callback_url_not_allowed"),
        ("https://10.1.2.3/cb", "callback_url_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "callback_url_not_allowed"),  # cloud metadata
        ("https://[::1]/cb", "callback_url_not_allowed"),
        ("http://8.8.8.8/cb", "callback_url_invalid"),  # plain http in production
        ("https://user:pw@8.8.8.8/cb", "callback_url_invalid"),
        ("ftp://8.8.8.8/cb", "callback_url_invalid"),
        # What the parser or the resolver raise on is a 422, not a 500 (found by the fuzzer).
        ("https://\u00f6\U000d2276\u0117[", "callback_url_invalid"),  # an unbalanced IPv6 bracket
        ("https://8.8.8.8:99999/cb", "callback_url_invalid"),
        ("https://8.8.8.8:x/cb", "callback_url_invalid"),
        ("https://a" + "b" * 70 + ".example/cb", "callback_url_invalid"),  # IDNA refuses a 71-char label
        # Security review (issue #29, finding 5): each of these was accepted before.
        ("https://[64:ff9b::a9fe:a9fe]/", "callback_url_not_allowed"),  # NAT64 form of 169.254.169.254
        ("https://[2002:7f00:1::]/", "callback_url_not_allowed"),  # 6to4 of 127.0.0.1
        ("https://[::127.0.0.1]/", "callback_url_not_allowed"),  # IPv4-compatible form of loopback
        ("https://[::ffff:8.8.8.8]/", "callback_url_not_allowed"),  # IPv4-mapped: an IPv4 in disguise
        ("https://192.0.0.9/", "callback_url_not_allowed"),  # `ipaddress` calls it global
        ("https://100.64.0.1/", "callback_url_not_allowed"),  # carrier-grade NAT
        ("https://8.8.8.8:8443/cb", "callback_url_not_allowed"),  # not an allowed port
        ("https://8.8.8.8:22/cb", "callback_url_not_allowed"),
    ],
)
async def test_production_refuses_non_public_or_unsafe_urls(url: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate(url, PRODUCTION)
    assert caught.value.code == code


async def test_public_https_address_is_allowed() -> None:
    await validate("https://8.8.8.8/hooks/herald", PRODUCTION)  # a literal: no DNS needed


async def test_development_allows_loopback() -> None:
    await validate("http://127.0.0.1:9000/cb", DEVELOPMENT)


async def test_development_still_refuses_a_url_that_cannot_be_called() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate("http://127.0.0.1:70000/cb", DEVELOPMENT)
    assert caught.value.code == "callback_url_invalid"


async def test_an_allowed_port_list_is_honoured() -> None:
    await validate("https://8.8.8.8:8443/cb", CallbackPolicy(ports=(443, 8443)))


class _Answers(AbstractResolver):
    """A DNS that answers what the test says (what a rebinding attacker's name server does)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0) for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_dispatch_resolver_refuses_a_name_that_now_resolves_inside() -> None:
    """DNS rebinding (finding 4): a name checked public at create time answers 169.254.169.254
    at dispatch; the resolver aiohttp connects through refuses it, so nothing is dialled."""
    dns = _Answers("8.8.8.8")
    resolver = GuardedResolver(PRODUCTION, dns)
    assert [r["host"] for r in await resolver.resolve("hooks.example", 443)] == ["8.8.8.8"]
    dns.addresses = ("8.8.8.8", "169.254.169.254")
    with pytest.raises(AddressNotAllowed):
        await resolver.resolve("hooks.example", 443)
    assert [r["host"] for r in await GuardedResolver(DEVELOPMENT, dns).resolve("hooks.example", 443)] == [
        "8.8.8.8",
        "169.254.169.254",
    ]
