"""What several unit tests build: an outbound message, a clock they move by hand, a provider
that answers from a script."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from herald.domain.models import Category, Channel, KeyKind
from herald.domain.records import OutboundMessage
from herald_worker.providers.base import Accepted

_MESSAGE = OutboundMessage(
    id=uuid.UUID(int=0), tenant_id=uuid.UUID(int=0), key_kind=KeyKind.LIVE, channel=Channel.SMS,
    category=Category.AUTHENTICATION, template_name="otp", template_language="en", template_version=1,
    to="+447400123456", country="GB", body="Your code is 123456", created_at_ms=1_000, expires_at_ms=2_000,
)  # fmt: skip


def outbound(**fields: Any) -> OutboundMessage:
    """A valid live SMS OTP with a fresh id and tenant; `fields` replace any of its own."""
    return msgspec.structs.replace(_MESSAGE, **{"id": uuid.uuid4(), "tenant_id": uuid.uuid4(), **fields})


class Clock:
    """Monotonic seconds that move only when a test sets `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A provider answering with the scripted outcomes in order; counts its calls."""

    name = "scripted"

    def __init__(self, *outcomes: Accepted | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def send(self, message: OutboundMessage) -> Accepted:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def close(self) -> None:
        return None
