"""DKIM signatures with their RSA step on OpenSSL (`cryptography`), the rest dkimpy's.

dkimpy canonicalises the message, hashes it, writes and folds the `DKIM-Signature` header, and
computes the RSA signature itself in pure Python: 6.8 ms per 2048-bit signature measured here,
holding the GIL, which capped a worker at ~135-200 mails/s (loadtests/RESULTS.md). OpenSSL makes
the same RSASSA-PKCS1-v1_5 signature (deterministic: byte for byte the same, which a unit test
checks against dkimpy's own) in ~0.4 ms.

`DKIM.sign` calls two names of the `dkim` module, `parse_pem_private_key` and
`RSASSA_PKCS1_v1_5_sign`; `install` points those two at OpenSSL. Nothing else changes: dkimpy's
verification and `dkim.crypto` stay pure Python, so a test verifying with dkimpy still checks
the signature independently. If a dkimpy release renames them, `install` fails at import
instead of silently signing slowly.
"""

from __future__ import annotations

import functools
from typing import Protocol

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256()}
"""Herald signs rsa-sha256 only (RFC 8301 forbids signing with rsa-sha1)."""


class _Hash(Protocol):
    name: str

    def digest(self) -> bytes: ...


@functools.lru_cache(maxsize=1024)
def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The identity's key, parsed once (dkimpy parses the PEM on every signature)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise dkim.KeyFormatError(str(exc)) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise dkim.KeyFormatError("not an RSA key")
    return key


def _sign(hashed: _Hash, key: rsa.RSAPrivateKey) -> bytes:
    return key.sign(hashed.digest(), padding.PKCS1v15(), utils.Prehashed(_HASHES[hashed.name]))


def install() -> None:
    """Sign with OpenSSL from now on, in this process (idempotent)."""
    for name in ("parse_pem_private_key", "RSASSA_PKCS1_v1_5_sign"):
        if not hasattr(dkim, name):
            raise RuntimeError(f"dkimpy no longer calls dkim.{name}: revisit herald_worker.email.dkim_openssl")
    dkim.parse_pem_private_key = _private_key
    dkim.RSASSA_PKCS1_v1_5_sign = _sign
