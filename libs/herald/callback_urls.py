"""Callback URL policy, including the SSRF guard.

In production a tenant may not point Herald at anything but a public host on an allowed port
over https: no private, loopback, link-local, shared or documentation ranges, no cloud metadata
endpoint, and none of them reached through an address translation form (NAT64 `64:ff9b::/96`,
6to4 `2002::/16`, Teredo, IPv4-mapped or IPv4-compatible IPv6), which `ipaddress.is_global`
alone lets through. Every address a host name resolves to must be public.

The policy is applied twice: when the URL is set (`validate`, a clear 422) and at every
dispatch (`check_target` for the URL, `GuardedResolver` for the addresses the connection is
made to), because DNS can answer differently an hour later (DNS rebinding). The resolver is
the check: aiohttp connects to the addresses it returns, so what was checked is what is dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from herald.errors import InvalidRequest
from herald.settings import CallbackSettings

_SPECIAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        # IPv6 forms that carry an IPv4 address (the embedded one could be anything).
        "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "::ffff:0:0/96",
        # IETF protocol assignments (192.0.0.9 and .10 count as global for `ipaddress`), the
        # 6to4 relay anycast, benchmarking, shared address space (carrier-grade NAT).
        "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "100.64.0.0/10",
    )
)  # fmt: skip


CallbackPolicy = CallbackSettings
"""The `callbacks` settings section is the policy: the API checks a URL with it at create, the
callback sink at every dispatch."""


class AddressNotAllowed(OSError):
    """Raised by `GuardedResolver` for a host with a non-public address."""


def public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index (fe80::1%eth0) is link-local anyway
    if ip.is_multicast or not ip.is_global:
        return False
    return not any(ip.version == net.version and ip in net for net in _SPECIAL)


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest.field(field, message, code="callback_url_invalid")


def _not_allowed(field: str, message: str) -> InvalidRequest:
    return InvalidRequest.field(field, message, code="callback_url_not_allowed")


def check_target(url: str, policy: CallbackPolicy, field: str = "callback_url") -> SplitResult:
    """Everything about `url` that needs no DNS: scheme, credentials, port, a literal address.
    Raises InvalidRequest (`callback_url_invalid` / `callback_url_not_allowed`)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: out of range or not a number raises here
    except ValueError:  # an unbalanced "[" (IPv6 literal), a bad port
        raise _invalid(field, "must be an absolute http(s) URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid(field, "must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise _invalid(field, "must not carry credentials")
    if policy.allow_private:
        return parts
    if parts.scheme != "https":
        raise _invalid(field, "must use https")
    if (port or 443) not in policy.ports:
        raise _not_allowed(field, f"port must be one of {', '.join(map(str, policy.ports))}")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return parts
    if not public(str(literal)):
        raise _not_allowed(field, "is a non-public address")
    return parts


async def validate(url: str, policy: CallbackPolicy, *, field: str = "callback_url") -> None:
    """Raises InvalidRequest for any URL Herald should not call, including ones the URL parser
    or the resolver cannot take."""
    parts = check_target(url, policy, field)
    if policy.allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a label too long)
        raise _invalid(field, "does not resolve") from None
    if not infos or not all(public(str(info[4][0])) for info in infos):
        raise _not_allowed(field, "resolves to a non-public address")


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses a host if any address it resolves to is not public."""

    def __init__(self, policy: CallbackPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self._policy.allow_private and not all(public(r["host"]) for r in found):
            raise AddressNotAllowed(f"{host} resolves to a non-public address")
        return found

    async def close(self) -> None:
        await self._inner.close()
