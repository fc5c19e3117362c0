"""Timestamped HMAC-SHA256 signatures: `t=<unix seconds>,v1=<hex HMAC(secret, "<t>." + body)>`.

Used for tenant callbacks (Herald-Signature) and for provider receipts into Herald. The
timestamp is covered by the MAC, and verification rejects signatures older than `tolerance`
seconds or more than `future` seconds ahead (clock skew only), so a captured request cannot be
replayed later and a signature minted for the future cannot be stored up. Within the window a
replay is harmless only because what it carries is idempotent: receivers must make it so.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(secret: str, body: bytes, now: int | None = None) -> str:
    t = int(time.time()) if now is None else now
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


FUTURE_SKEW_SECONDS = 30
"""How far ahead of this host's clock a signature's timestamp may be (the signer's clock skew)."""


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = 300,
    future: int = FUTURE_SKEW_SECONDS,
    now: int | None = None,
) -> bool:
    """True when some `v1` in `header` is the MAC of this body at its `t`, and `t` is within
    [now - tolerance, now + future]. Any header at all (non-ASCII, malformed) is an answer, never
    an exception: it comes from whoever can reach the endpoint."""
    if not header.isascii():
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if not current - tolerance <= t <= current + future:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    # Any v1 may match (several are present while a secret is being rotated).
    return any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in fields.get("v1", []))
