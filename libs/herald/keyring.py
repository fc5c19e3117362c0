"""The secrets Herald stores, wrapped under the key-encryption key (KEK) from the environment.

The database holds no usable secret: content keys and tenants' provider credentials are stored
wrapped, and the KEK that opens them lives only in the processes' environment
(`HERALD_SECRETS_KEK`). A dump, a backup or a read-only SQL injection yields ciphertext.

A wrapped value is `version (1) ‖ KEK id (8) ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag)`:

* the wrapping key is derived from the KEK with its own label, so it is never the key recipient
  hashing derives from the same KEK (`herald.domain.limits`);
* the associated data is the value's `context`, naming the row and field it belongs to
  (`content_key:<hour>`, `whatsapp:<tenant>:access_token`): a wrapped value copied into another
  row, or another tenant's, does not open;
* the KEK id says which KEK wrapped it, so a rotation needs no trial decryption: the new KEK in
  `secrets.kek`, the old one in `secrets.previous_keks` while `herald rewrap-secrets` wraps every
  stored value under the new one; then the old KEK can go.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_ID = 8
_NONCE = 12
_HEADER = len(_VERSION) + _ID + _NONCE


class Unwrappable(Exception):
    """A wrapped value that no listed KEK opens for its context (tampered, moved to another row,
    or wrapped under a KEK that is no longer configured)."""


def kek_id(kek: bytes) -> bytes:
    return hashlib.sha256(b"herald/kek-id/v1" + kek).digest()[:_ID]


class KeyRing:
    """The KEKs a process was given: wraps under the first (the current one), unwraps under any."""

    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise ValueError("a key ring needs at least one KEK")
        self._current = kek_id(keks[0])
        self._aeads = {kek_id(k): AESGCM(hmac.new(k, b"herald/key-wrap/v1", hashlib.sha256).digest()) for k in keks}

    def wrap(self, secret: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed = self._aeads[self._current].encrypt(nonce, secret, context.encode())
        return _VERSION + self._current + nonce + sealed

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        if len(wrapped) < _HEADER or wrapped[:1] != _VERSION:
            raise Unwrappable("not a wrapped value")
        aead = self._aeads.get(wrapped[1 : 1 + _ID])
        if aead is None:
            raise Unwrappable("wrapped under a KEK this process was not given")
        try:
            return aead.decrypt(wrapped[1 + _ID : _HEADER], wrapped[_HEADER:], context.encode())
        except InvalidTag:
            raise Unwrappable("does not authenticate for its context") from None

    def rewrapped(self, wrapped: bytes, context: str) -> bytes | None:
        """`wrapped` under the current KEK, or None if it is already (what a rotation does to each
        stored value)."""
        return None if self.is_current(wrapped) else self.wrap(self.unwrap(wrapped, context), context)

    def is_current(self, wrapped: bytes) -> bool:
        """Whether `wrapped` is under the current KEK (else `herald rewrap-secrets` rewraps it)."""
        return wrapped[1 : 1 + _ID] == self._current
