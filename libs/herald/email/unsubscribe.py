"""One-click unsubscribe tokens (RFC 8058): the URL in a marketing mail's `List-Unsubscribe`.

A token names the tenant, the recipient and the mail it came in, sealed with AES-256-GCM under a
key derived from the KEK with its own label: unguessable, unforgeable (a changed byte does not
open), and it does not show the address to whoever logs the URL. It carries the KEK's id, so a
token minted before a KEK rotation opens while the old KEK is still listed. It does not expire:
RFC 8058 asks the link to work for as long as mail carrying it may be read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Sequence

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.models import Channel
from herald.keyring import kek_id

_VERSION = b"u1"
_ID = 8
_NONCE = 12


class Unsubscribe(msgspec.Struct, frozen=True, array_like=True):
    tenant_id: uuid.UUID
    message_id: uuid.UUID
    recipient: str
    channel: Channel = Channel.EMAIL


class BadToken(ValueError):
    """Not a token Herald minted (or minted under a KEK no longer listed)."""


_DECODER = msgspec.msgpack.Decoder(Unsubscribe)


class Tokens:
    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise ValueError("unsubscribe tokens need at least one KEK")
        self._current = kek_id(keks[0])
        self._aeads = {
            kek_id(k): AESGCM(hmac.new(k, b"herald/unsubscribe-token/v1", hashlib.sha256).digest()) for k in keks
        }

    def mint(self, what: Unsubscribe) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aeads[self._current].encrypt(nonce, msgspec.msgpack.encode(what), _VERSION)
        return base64.urlsafe_b64encode(_VERSION + self._current + nonce + sealed).rstrip(b"=").decode()

    def open(self, token: str) -> Unsubscribe:
        """Raises BadToken."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise BadToken("not base64url") from exc
        head = len(_VERSION) + _ID + _NONCE
        if len(raw) <= head or raw[: len(_VERSION)] != _VERSION:
            raise BadToken("not a token")
        aead = self._aeads.get(raw[len(_VERSION) : len(_VERSION) + _ID])
        if aead is None:
            raise BadToken("minted under a KEK this process was not given")
        try:
            plain = aead.decrypt(raw[head - _NONCE : head], raw[head:], _VERSION)
        except InvalidTag:
            raise BadToken("does not authenticate") from None
        try:
            return _DECODER.decode(plain)
        except msgspec.DecodeError as exc:  # authenticated, so only a future version's layout
            raise BadToken("unknown layout") from exc
