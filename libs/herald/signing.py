"""Timestamped HMAC-SHA256 signatures: `t=<unix seconds>,v1=<hex HMAC(secret, "<t>." + body)>`.

Used for tenant callbacks (Herald-Signature) and for provider receipts into Herald. The
timestamp is covered by the MAC, and verification rejects signatures outside a tolerance
window, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(secret: str, body: bytes, now: int | None = None) -> str:
    t = int(time.time()) if now is None else now
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: int | None = None) -> bool:
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    # Any v1 may match (several are present while a secret is being rotated).
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
