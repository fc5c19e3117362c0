"""Message content (recipient and body) sealed on every topic, purged by deleting its key.

Kafka logs are append-only and copied (replicas, mirrors, backups): a record cannot be edited
to forget a phone number. So the content never reaches a topic in clear. The API seals each
message's `[to, body]` with AES-256-GCM under the key of the current UTC hour (table
`content_keys`); workers open it just before handing it to a provider. After
`retention.content_days`, `herald retention` deletes the hour's key, and that hour's content is
gone from every copy of every topic at once (crypto-shredding). The envelope (ids, tenant,
template, country, times) stays readable: the status projection, billing and routing need it,
and it names no person. Record keys carry a 16-bit recipient bucket, not the recipient
(`records.message_key`).

Keys are stored in Postgres and cached per process (`herald.db.content_keys.ContentKeys`).
Every process refuses a key older than the retention window even while it is cached, so
content is unreadable on time whether or not `herald retention` has run; the command makes it
unreadable for everyone else too (a stolen dump, a backup).
"""

from __future__ import annotations

import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.records import MessageEnvelope, OutboundMessage, SealedMessageV2

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_NONCE = 12
_CONTENT = msgspec.msgpack.Decoder(tuple[str, str])
_PACK = msgspec.msgpack.Encoder()
_ENVELOPE_FIELDS = MessageEnvelope.__struct_fields__


class ContentUnavailable(Exception):
    """The content cannot be opened: its key was purged (retention), or it does not authenticate."""


def hour_of(ms: int) -> int:
    return ms // HOUR_MS


def first_readable_hour(now_ms: int, retention_days: int) -> int:
    """The oldest hour whose content is still within retention: every hour before it ended more
    than `retention_days` ago."""
    return hour_of(now_ms - retention_days * DAY_MS)


def _envelope(m: MessageEnvelope) -> dict[str, object]:
    return {name: getattr(m, name) for name in _ENVELOPE_FIELDS}


def seal(aead: AESGCM, hour: int, message: OutboundMessage) -> SealedMessageV2:
    nonce = os.urandom(_NONCE)
    sealed = aead.encrypt(nonce, _PACK.encode((message.to, message.body)), message.id.bytes)
    return SealedMessageV2(**_envelope(message), content_key=hour, content=nonce + sealed)  # type: ignore[arg-type]


def reseal(sealed: SealedMessageV2, message: OutboundMessage) -> SealedMessageV2:
    """`message`'s envelope (a later attempt, a new not-before time) around `sealed`'s content,
    unchanged: no key needed, so a worker can always re-queue what it opened."""
    if message.id != sealed.id:
        raise ValueError("reseal keeps a message's own content only")
    return SealedMessageV2(**_envelope(message), content_key=sealed.content_key, content=sealed.content)  # type: ignore[arg-type]


def open_with(aead: AESGCM, sealed: SealedMessageV2) -> OutboundMessage:
    try:
        plain = aead.decrypt(sealed.content[:_NONCE], sealed.content[_NONCE:], sealed.id.bytes)
    except InvalidTag:
        raise ContentUnavailable("the content does not authenticate") from None
    to, body = _CONTENT.decode(plain)
    return OutboundMessage(**_envelope(sealed), to=to, body=body)  # type: ignore[arg-type]


def seal_blob(aead: AESGCM, plain: bytes, bound_to: bytes) -> bytes:
    """Content kept outside a message record (a campaign's row), bound to what names it
    (`bound_to`: a blob moved to another row does not open)."""
    nonce = os.urandom(_NONCE)
    return nonce + aead.encrypt(nonce, plain, bound_to)


def open_blob(aead: AESGCM, blob: bytes, bound_to: bytes) -> bytes:
    try:
        return aead.decrypt(blob[:_NONCE], blob[_NONCE:], bound_to)
    except InvalidTag:
        raise ContentUnavailable("the content does not authenticate") from None
