"""The provider contract and its outcome taxonomy."""

from __future__ import annotations

import math
from typing import Protocol

import msgspec

from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.metrics import ProviderOutcome


class Accepted(msgspec.Struct, frozen=True):
    provider_message_id: str
    delivered: bool = False
    """True when the provider reports no receipts and acceptance is final (sink, email)."""
    provider: str | None = None
    """The name the send is recorded under, when not the adapter's own: a tenant's own account
    (`whatsapp:<waba id>`), so its receipts bind only to sends made through it."""


MAX_NAMED_WAIT_SECONDS = 86_400.0
"""The longest wait a provider may name that is taken as given: a daily quota resets within it."""


class RetryableError(Exception):
    """Transient: throttled, busy, timeout, 5xx. `retry_after` seconds when the provider said so.

    The provider's figure is taken only if it is a number of seconds from 0 to a day; a longer
    one is cut to a day, and a negative, infinite or NaN one counts as none named. (`Retry-After:
    inf` once reached the retry topic's arithmetic as infinity, and the send failed with an
    OverflowError instead of being retried.)
    """

    def __init__(
        self,
        reason: Reason,
        retry_after: float | None = None,
        *,
        untaken: bool = False,
        pinned: str | None = None,
        lost: bool = False,
    ) -> None:
        """`untaken`: the provider certainly did not take the message (no connection, no bind,
        throttled, refused before acceptance), so another provider may be tried. Otherwise it may
        have (an answer lost to a timeout or a dropped connection): `pinned`, set by the router,
        names that provider, and every later attempt goes to it alone (`MessageEnvelope.provider_pin`).

        `lost`: no answer came at all: the request went out, then the call timed out or the
        connection dropped. The provider may have the message, and may be stalled
        (`ProviderGate.reported`: one attempt at a time until it answers again)."""
        if not reason.transient:
            raise ValueError(f"{reason} is not a transient reason")
        if lost and untaken:
            raise ValueError("an attempt whose answer was lost may have been taken")
        super().__init__(reason)
        self.reason = reason
        self.untaken = untaken
        self.lost = lost
        self.pinned = pinned
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            retry_after = None
        self.retry_after = None if retry_after is None else min(retry_after, MAX_NAMED_WAIT_SECONDS)


class PermanentError(Exception):
    """Never retried: invalid number, opted out, template paused, rejected content."""

    def __init__(self, reason: Reason, provider_error: str | None = None) -> None:
        """`provider_error`: the provider's own code and words (an SMTP reply), shown on the
        `failed` event beside `reason`. Never recipient data."""
        super().__init__(reason)
        self.reason = reason
        self.provider_error = provider_error


class Postponed(Exception):
    """The provider cannot take it for a reason on the tenant's side that the tenant must fix
    (its WhatsApp token expired): the message waits on `herald.retry`, unsent, without spending
    an attempt, and is tried again in `seconds` (or expires)."""

    def __init__(self, reason: Reason, seconds: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


class Provider(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> Accepted:
        """Hand one message over. Raises RetryableError or PermanentError; never anything else."""
        ...

    async def close(self) -> None: ...


_RECIPIENT_REASONS = frozenset({Reason.INVALID_NUMBER, Reason.OPTED_OUT, Reason.RECIPIENT_BUSY})


def outcome_of(exc: RetryableError | PermanentError) -> ProviderOutcome:
    """The provider-health outcome of a refused or failed attempt."""
    if isinstance(exc, RetryableError) and exc.lost:
        return ProviderOutcome.NO_ANSWER
    if exc.reason in _RECIPIENT_REASONS:
        return ProviderOutcome.RECIPIENT
    if exc.reason is Reason.THROTTLED:
        return ProviderOutcome.THROTTLED
    if exc.reason is Reason.QUOTA_EXHAUSTED:
        return ProviderOutcome.QUOTA
    if exc.reason in (Reason.PROVIDER_UNAVAILABLE, Reason.PROVIDER_BAD_RESPONSE):
        return ProviderOutcome.ERROR
    return ProviderOutcome.REFUSED
