"""Versioned record schemas carried on Kafka topics (the values; keys are plain bytes).

Each record type is a msgspec Struct tagged with its schema name and version, so a consumer
decodes exactly the versions it knows and a producer can add a `.v2` beside `.v1` without a
flag day. Contracts (topic, producers, consumers, example) live in herald/contracts/topics.toml.
Times are integer Unix milliseconds.
"""

from __future__ import annotations

import uuid

import msgspec

from herald.domain.models import Category, Channel, KeyKind, Tier
from herald.domain.status import Status


class OutboundMessageV1(msgspec.Struct, frozen=True, tag="herald.message.v1", tag_field="schema"):
    """A rendered message accepted by the API, waiting on its class topic for a worker."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    key_kind: KeyKind
    channel: Channel
    category: Category
    template_name: str
    template_language: str
    template_version: int
    to: str
    country: str | None
    body: str
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
    """On `herald.retry`: the worker does not try again before this time."""
    last_error: str | None = None
    """On `herald.retry`: the transient reason of the previous attempt."""
    replay_of: uuid.UUID | None = None
    """Set by `herald dlq replay`: the failed message this one re-sends."""


class StatusEventV1(msgspec.Struct, frozen=True, tag="herald.status.v1", tag_field="schema"):
    """One status transition of one message, on `herald.events` (keyed by message id)."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    status: Status
    at_ms: int
    reason: str | None = None
    """Machine-readable failure reason (`invalid_number`, `provider_unavailable`, ...)."""
    provider_message_id: str | None = None


class DeadLetterV1(msgspec.Struct, frozen=True, tag="herald.deadletter.v1", tag_field="schema"):
    """A message that failed in the worker, copied to `herald.dlq` with why, for inspection and
    replay. Written in the same acknowledged produce as its `failed` event."""

    message: OutboundMessageV1
    reason: str
    kind: str
    """`permanent` (the provider refused it) or `retries_exhausted` (transient errors persisted)."""
    failed_at_ms: int


MESSAGE_DECODER = msgspec.json.Decoder(OutboundMessageV1)
EVENT_DECODER = msgspec.json.Decoder(StatusEventV1)
ENCODER = msgspec.json.Encoder()


def message_key(tenant_id: uuid.UUID, recipient: str) -> bytes:
    """Tenant + recipient: keeps one recipient's messages in order on one partition."""
    return f"{tenant_id}:{recipient}".encode()
