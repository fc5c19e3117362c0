"""Time-ordered UUIDs (RFC 9562 version 7): sortable, index-friendly, no coordination."""

from __future__ import annotations

import os
import uuid

from herald import clock


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """48-bit Unix milliseconds, version 7, 74 random bits (with variant bits per RFC 9562)."""
    ms = clock.now_ms() if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


# Namespace for ids derived from (tenant, idempotency key). Fixed forever: changing it would give
# repeats a different id.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3a8e-5b0c-4c1e-9a57-48e1c0d2b7a4")


def idempotent_id(tenant_id: uuid.UUID, key: str) -> uuid.UUID:
    """Same tenant + key -> same id, in every API process, with no coordination (UUID v5).

    Not time-ordered, unlike uuid7: the price of needing no lookup at ingestion."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant_id}:{key}")
