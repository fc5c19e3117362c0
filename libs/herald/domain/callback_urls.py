"""Callback URL validation, including the SSRF guard.

In production a tenant may not point Herald at private, loopback, link-local or otherwise
non-public addresses (cloud metadata endpoints, internal services). Hostnames are resolved and
every address they resolve to must be public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from herald.errors import InvalidRequest


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


async def validate(url: str, *, allow_private: bool, field: str = "callback_url") -> None:
    """Raises InvalidRequest (`callback_url_invalid`/`callback_url_not_allowed`) for any URL
    Herald should not call, including ones the URL parser or the resolver cannot take."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: out of range or not a number raises here
    except ValueError:  # an unbalanced "[" (IPv6 literal), a bad port
        raise InvalidRequest.field(field, "must be an absolute http(s) URL", code="callback_url_invalid") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest.field(field, "must be an absolute http(s) URL", code="callback_url_invalid")
    if parts.username or parts.password:
        raise InvalidRequest.field(field, "must not carry credentials", code="callback_url_invalid")
    if allow_private:
        return
    if parts.scheme != "https":
        raise InvalidRequest.field(field, "must use https", code="callback_url_invalid")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a label too long)
        raise InvalidRequest.field(field, "does not resolve", code="callback_url_invalid") from None
    if not infos or not all(_public(str(info[4][0])) for info in infos):
        raise InvalidRequest.field(field, "resolves to a non-public address", code="callback_url_not_allowed")
