"""A send as the sender asked for it, before a template and a recipient make it a message."""

from __future__ import annotations

import msgspec

from herald.domain.models import Channel


class SendRequest(msgspec.Struct, frozen=True):
    to: str
    channel: Channel
    template_name: str
    template_language: str
    params: dict[str, str]
    reference: str | None = None
    ttl_seconds: int | None = None
    idempotency_key: str | None = None
