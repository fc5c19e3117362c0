"""The provider contract and its outcome taxonomy."""

from __future__ import annotations

from typing import Protocol

import msgspec

from herald.domain.records import OutboundMessage


class Accepted(msgspec.Struct, frozen=True):
    provider_message_id: str
    delivered: bool = False
    """True when the provider reports no receipts and acceptance is final (sink, email)."""


class RetryableError(Exception):
    """Transient: throttled, busy, timeout, 5xx. `retry_after` seconds when the provider said so."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """Never retried: invalid number, opted out, template paused, rejected content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> Accepted:
        """Hand one message over. Raises RetryableError or PermanentError; never anything else."""
        ...

    async def close(self) -> None: ...
