"""Versioned record schemas carried on Kafka topics (the values; keys are plain bytes).

Each record type is a msgspec Struct tagged with its schema name and version, so a consumer
decodes exactly the versions it knows and a producer can add a `.v2` beside `.v1` without a
flag day. Contracts (topic, producers, consumers, example) live in herald/contracts/topics.toml.
Times are integer Unix milliseconds.
"""

from __future__ import annotations

import hashlib
import uuid

import msgspec

from herald.domain.models import Category, Channel, EpochMillis, KeyKind, Tier
from herald.domain.reasons import LetterKind, Reason
from herald.domain.status import Status


class MessageEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What every stage may read about a message: everything but its recipient and body."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    key_kind: KeyKind
    channel: Channel
    category: Category
    template_name: str
    template_language: str
    template_version: int
    country: str | None
    created_at_ms: int
    expires_at_ms: int
    verified_sender: bool = False
    reference: str | None = None
    attempt: int = 0
    idempotent: bool = False
    """The id was derived from an idempotency key: the worker claims it before sending, so a
    repeated request (same id, another record) is delivered once."""
    tier: Tier | None = None
    """The tenant's tier at acceptance: decides whether the message is billed (None on records
    produced before this field existed; billing then uses the tenant's current tier)."""
    not_before_ms: int = 0
    """On `herald.retry`: the worker does not try again before this time. On a class topic: the
    `send_at` of a scheduled message (the worker keeps it in PostgreSQL until then)."""
    last_error: Reason | None = None
    """On `herald.retry`: why the previous attempt did not send it (a transient reason, or why it waits)."""
    replay_of: uuid.UUID | None = None
    """Set by `herald dlq replay`: the failed message this one re-sends."""
    provider_pin: str | None = None
    """On `herald.retry`: the provider an earlier attempt may have reached (its answer was lost).
    Later attempts go to it alone, so that two providers never both deliver one message."""
    sender: str | None = None
    """An sms's sender: its tenant's own (`Tenant.sms_sender`) at accept; None, the provider's.
    An email's: the verified identity's address it goes from (`herald.domain.email.Identity`)."""
    segments: int = 1
    """What the provider carries and bills it as: an SMS's segments (`herald.domain.segments`),
    decided at accept from the rendered text; 1 on every other channel."""
    campaign_id: uuid.UUID | None = None
    """The campaign whose row this message is (`herald.domain.campaigns`): cancelling the
    campaign cancels it too, if a provider does not have it yet."""


class OutboundMessage(MessageEnvelope, frozen=True, kw_only=True):
    """A rendered message with its recipient and body in clear: in memory only (the API before
    it produces, the worker after it opened the record). Never written to a topic as is: see
    `SealedMessageV2` and `herald.sealing`."""

    to: str
    body: str


class SealedMessageV2(MessageEnvelope, frozen=True, kw_only=True, tag="herald.message.v2", tag_field="schema"):
    """A message on a class topic or `herald.retry`: the envelope in clear (routing, status
    projection, billing need it), the recipient and body sealed with the hour's content key.

    v1 carried `to` and `body` in clear; it was retired before any deployment, so nothing
    decodes it any more.
    """

    content_key: int
    """The content key's hour (hours since the Unix epoch, UTC) in table `content_keys`. Once
    `herald retention` deleted it, the content cannot be read by anyone, from any copy."""
    content: bytes
    """AES-256-GCM: 12-byte nonce, then the sealed msgpack `[to, body]`; the message id is the
    associated data, so a sealed content cannot be moved to another message."""


class StatusEventV1(msgspec.Struct, frozen=True, omit_defaults=True, tag="herald.status.v1", tag_field="schema"):
    """One status transition of one message, on `herald.events` (keyed by message id).

    Fields at their default are left out of the record (every consumer decodes them back to it):
    most events carry no reason, no provider and no pricing, and writing each as `null` cost the
    delivery path measurably once the pricing fields came (loadtests/RESULTS.md, session 17)."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    status: Status
    at_ms: EpochMillis
    """A record outside the bounds does not decode, and the sinks skip undecodable records
    instead of stopping on them."""
    reason: Reason | None = None
    """Why it failed or expired (`herald.domain.reasons`)."""
    provider_message_id: str | None = None
    provider: str | None = None
    """On the worker's `sent`: the provider that took the message. With `provider_message_id`,
    the only key a provider's receipt is bound by (`herald.domain.receipts`)."""
    pricing_category: Category | None = None
    """On a provider's report that priced the message (WhatsApp's `pricing.category`): the
    category the provider bills, which the ledger bills too when it is not the message's own."""
    billable: bool | None = None
    """On such a report: False when the provider does not bill the message (the ledger then
    does not either); None when it did not say."""
    provider_error: str | None = None
    """On a provider's `failed` report: its own code and words (`131026 Message undeliverable`),
    shown beside Herald's `reason`."""


class DeadLetterV2(msgspec.Struct, frozen=True, tag="herald.deadletter.v2", tag_field="schema"):
    """A message that failed in the worker, copied to `herald.dlq` with why, for inspection and
    replay. Written in the same acknowledged produce as its `failed` event. The message stays
    sealed (v1 held it in clear): replaying needs its content key, so retention covers the DLQ."""

    message: SealedMessageV2
    reason: Reason
    kind: LetterKind
    failed_at_ms: int


MESSAGE_DECODER = msgspec.json.Decoder(SealedMessageV2)
DEAD_LETTER_DECODER = msgspec.json.Decoder(DeadLetterV2)
EVENT_DECODER = msgspec.json.Decoder(StatusEventV1)
ENCODER = msgspec.json.Encoder()


def decode_event(_: object, value: bytes) -> StatusEventV1:
    """`herald.events`' decoder in the shape a consumer's `decoded` takes (any partition)."""
    return EVENT_DECODER.decode(value)


def message_key(tenant_id: uuid.UUID, recipient: str) -> bytes:
    """Tenant + a 16-bit bucket of the recipient: one recipient's messages always share a key, so
    they stay in order on one partition, while the key (which is never sealed and outlives the
    content key in every copy of the log) names one of 65,536 buckets, not a person: reversing
    it gives every number in the bucket, millions per country."""
    tenant = str(tenant_id)  # once: a UUID's str() is Python code, and this runs per message
    digest = hashlib.sha256(f"{tenant}:{recipient}".encode()).digest()
    return f"{tenant}:{int.from_bytes(digest[:2], 'big'):04x}".encode()
