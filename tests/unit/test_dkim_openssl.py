"""DKIM signing's RSA step on OpenSSL (herald_worker.email.dkim_openssl), checked against dkimpy."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime

import dkim
import dkim.crypto
import pytest

from herald.domain.email import EmailContent, Identity, IdentityStatus, dkim_record
from herald.email import keys
from herald_worker.email import dkim_openssl
from herald_worker.email.mime import build


def test_openssls_signature_is_byte_for_byte_dkimpys_own() -> None:
    """RSASSA-PKCS1-v1_5 is deterministic: the same key and digest give the same signature."""
    dkim_openssl.install()
    pem = keys.generate()
    for data in (b"", b"DKIM-Signature: v=1; a=rsa-sha256; b=", bytes(range(256)) * 40):
        ours = dkim.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), dkim.parse_pem_private_key(pem))
        pure = dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), dkim.crypto.parse_pem_private_key(pem))
        assert ours == pure
    assert dkim.RSASSA_PKCS1_v1_5_sign is not dkim.crypto.RSASSA_PKCS1_v1_5_sign  # installed


def test_a_built_mail_verifies_with_dkimpys_pure_python_verifier() -> None:
    pem = keys.generate()
    identity = Identity(
        tenant_id=uuid.uuid4(), from_address="news@mail.shop.example", from_name="Shop", selector="herald1",
        public_key=keys.public(pem), status=IdentityStatus.VERIFIED, created_at=datetime.now(UTC),
    )  # fmt: skip
    raw = build(str(uuid.uuid4()), "reader@example.org", EmailContent("Hi", "Hello", "<p>Hello</p>"), identity, pem,
                time.time(), None)  # fmt: skip
    record = dkim_record(identity.public_key).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"herald1._domainkey.mail.shop.example." else b""

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"Hello", b"Hullo", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_key_openssl_cannot_read_is_dkimpys_key_format_error() -> None:
    dkim_openssl.install()
    with pytest.raises(dkim.KeyFormatError):
        dkim.parse_pem_private_key(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
