"""API key format, generation and verification.

A key looks like `hk_live_<key id, 32 hex>_<secret, 43 url-safe chars>`. The id is public and
indexes the row; only a salted SHA-256 of the 256-bit secret is stored, and verification
compares digests in constant time. (A slow KDF buys nothing for 256 random bits.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

import msgspec

from herald.domain.models import KeyKind
from herald.ids import uuid7

_PREFIX = "hk"


class IssuedKey(msgspec.Struct, frozen=True):
    id: uuid.UUID
    kind: KeyKind
    plaintext: str
    """Shown to the admin exactly once; never stored."""
    salt: bytes
    hash: bytes


class ParsedKey(msgspec.Struct, frozen=True):
    id: uuid.UUID
    kind: KeyKind
    secret: str


def digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def issue(kind: KeyKind) -> IssuedKey:
    key_id = uuid7()
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    return IssuedKey(
        id=key_id,
        kind=kind,
        plaintext=f"{_PREFIX}_{kind}_{key_id.hex}_{secret}",
        salt=salt,
        hash=digest(salt, secret),
    )


def parse(presented: str) -> ParsedKey | None:
    """None for anything that is not syntactically a Herald key (no database lookup needed)."""
    parts = presented.split("_", 3)
    if len(parts) != 4 or parts[0] != _PREFIX or parts[1] not in ("live", "test") or len(parts[2]) != 32:
        return None
    try:
        key_id = uuid.UUID(hex=parts[2])
    except ValueError:
        return None
    return ParsedKey(id=key_id, kind=KeyKind(parts[1]), secret=parts[3])


def verify(parsed: ParsedKey, salt: bytes, stored_hash: bytes) -> bool:
    return hmac.compare_digest(digest(salt, parsed.secret), stored_hash)
