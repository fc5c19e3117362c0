"""A send as the sender asked for it, before a template and a recipient make it a message."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from herald.domain.models import Channel
from herald.errors import InvalidRequest

MAX_SCHEDULE_DAYS = 30
"""How far ahead `send_at` may be."""
PAST_GRACE_MS = 60_000
"""A `send_at` up to this far in the past (a clock behind, a request slow to arrive) sends now."""


class SendRequest(msgspec.Struct, frozen=True):
    to: str
    channel: Channel
    template_name: str
    template_language: str
    params: dict[str, str]
    reference: str | None = None
    ttl_seconds: int | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None
    """Not before this time (timezone-aware); the message is `scheduled` until then."""
    campaign_id: uuid.UUID | None = None
    """Set by Herald's campaign producer, never by a client."""

    def not_before_ms(self, now_ms: int) -> int:
        """When the message may go (`not_before_ms` of its `send_at`)."""
        return not_before_ms(self.send_at, now_ms)


def not_before_ms(send_at: datetime | None, now_ms: int) -> int:
    """When something sent with `send_at` may go: 0 for now. Raises InvalidRequest
    (`invalid_send_at`) for a time past the grace or more than `MAX_SCHEDULE_DAYS` ahead."""
    if send_at is None:
        return 0
    at = int(send_at.timestamp() * 1000)
    if at < now_ms - PAST_GRACE_MS:
        raise InvalidRequest.field("send_at", "is in the past", code="invalid_send_at")
    if at > now_ms + MAX_SCHEDULE_DAYS * 86_400_000:
        ahead = f"is more than {MAX_SCHEDULE_DAYS} days ahead"
        raise InvalidRequest.field("send_at", ahead, code="invalid_send_at")
    return at if at > now_ms else 0
