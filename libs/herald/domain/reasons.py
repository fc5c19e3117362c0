"""Why a message failed, expired or waits: the closed vocabulary every part of Herald speaks.

A reason is written once, by the part that decides it (a provider adapter, the worker, the
sinks), and read as the same value by everything after it: status events, dead letters,
`herald.retry` records, metric labels and the API's event `detail`. Nothing is built into a
string and parsed back: a transient reason that ran out of retries is its own member
(`Reason.exhausted`), and a dead letter's kind is a `LetterKind`.

A provider's own codes (an HTTP aggregator's error number, an SMPP command status, a receipt's
error text) are mapped onto this vocabulary by its adapter; the provider's word is kept where it
was received (the provider receipts table), not in the message's reason.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # The provider refused the message: permanent, never retried.
    INVALID_NUMBER = "invalid_number"
    OPTED_OUT = "opted_out"
    REJECTED = "rejected"
    """Any other refusal the provider named (its code is logged by the adapter)."""
    UNDELIVERABLE = "undeliverable"
    """Accepted, then reported failed by the provider's receipt."""
    TEMPLATE_PAUSED = "template_paused"
    """WhatsApp: Meta paused the template (its quality); its messages fail unsent and unbilled."""
    TEMPLATE_DISABLED = "template_disabled"
    TEMPLATE_INVALID = "template_invalid"
    """WhatsApp: the template or its parameters do not match what Meta approved."""
    OUTSIDE_SERVICE_WINDOW = "outside_service_window"
    """WhatsApp: a message outside a template needs the user's reply within 24 h."""
    CHANNEL_NOT_CONNECTED = "channel_not_connected"
    """The tenant's own account for the channel was disconnected while the message waited."""

    # The provider could not take it now: retried, in process then on `herald.retry`.
    THROTTLED = "throttled"
    QUOTA_EXHAUSTED = "quota_exhausted"
    RECIPIENT_BUSY = "recipient_busy"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_BAD_RESPONSE = "provider_bad_response"

    # ... and failed once the retry budget was spent.
    THROTTLED_RETRIES_EXHAUSTED = "throttled_retries_exhausted"
    QUOTA_EXHAUSTED_RETRIES_EXHAUSTED = "quota_exhausted_retries_exhausted"
    RECIPIENT_BUSY_RETRIES_EXHAUSTED = "recipient_busy_retries_exhausted"
    PROVIDER_UNAVAILABLE_RETRIES_EXHAUSTED = "provider_unavailable_retries_exhausted"
    PROVIDER_BAD_RESPONSE_RETRIES_EXHAUSTED = "provider_bad_response_retries_exhausted"

    # Herald's own decisions.
    TTL_ELAPSED = "ttl_elapsed"
    """`expired`: its TTL passed before it could be sent. Never sent, never billed."""
    CONTENT_UNAVAILABLE = "content_unavailable"
    """Its sealed content could not be opened (key purged early, or it does not authenticate)."""
    RECIPIENT_SUPPRESSED = "recipient_suppressed"
    """Marketing to a recipient added to the tenant's suppression list after the message was
    accepted (an unsubscribe, a bounce, a STOP while it waited). Never sent, never billed, and
    not dead-lettered: nothing is wrong to fix and replay."""
    RECEIPT_TIMEOUT = "receipt_timeout"
    """Sent, and no final receipt came within `sinks.receipt_timeout_seconds`."""
    INTERNAL_ERROR = "internal_error"
    """A defect raised while delivering; dead-lettered, replayable once fixed."""

    # Waiting, never final: why a message went back on `herald.retry` unsent.
    TENANT_SUSPENDED = "tenant_suspended"
    TENANT_BACKLOG = "tenant_backlog"
    ACCOUNT_SUSPENDED = "account_suspended"
    """The tenant's provider account cannot send (WhatsApp: its token expired or was revoked, or
    Meta locked the account): its messages wait, unsent, until the tenant rotates the token."""

    def exhausted(self) -> Reason:
        """This transient reason once the retries ran out. Raises ValueError for any other."""
        return _EXHAUSTED[self]

    @property
    def retries_exhausted(self) -> bool:
        return self in _EXHAUSTED_VALUES

    @property
    def transient(self) -> bool:
        return self in _EXHAUSTED


_EXHAUSTED: dict[Reason, Reason] = {
    Reason.THROTTLED: Reason.THROTTLED_RETRIES_EXHAUSTED,
    Reason.QUOTA_EXHAUSTED: Reason.QUOTA_EXHAUSTED_RETRIES_EXHAUSTED,
    Reason.RECIPIENT_BUSY: Reason.RECIPIENT_BUSY_RETRIES_EXHAUSTED,
    Reason.PROVIDER_UNAVAILABLE: Reason.PROVIDER_UNAVAILABLE_RETRIES_EXHAUSTED,
    Reason.PROVIDER_BAD_RESPONSE: Reason.PROVIDER_BAD_RESPONSE_RETRIES_EXHAUSTED,
}
_EXHAUSTED_VALUES = frozenset(_EXHAUSTED.values())
TRANSIENT_REASONS = tuple(_EXHAUSTED)
"""The reasons a provider's refusal is retried for."""


NOT_DEAD_LETTERED = frozenset({Reason.RECIPIENT_SUPPRESSED})
"""Failures that are the outcome asked for, not something an operator would replay."""


class LetterKind(StrEnum):
    """Why a message is on the dead-letter topic."""

    PERMANENT = "permanent"
    """The provider refused it, or Herald could not send it."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """Transient errors persisted past the retry budget."""

    @classmethod
    def of(cls, reason: Reason) -> LetterKind:
        return cls.RETRIES_EXHAUSTED if reason.retries_exhausted else cls.PERMANENT


RECEIPT_REASONS = frozenset({
    Reason.INVALID_NUMBER, Reason.OPTED_OUT, Reason.REJECTED, Reason.UNDELIVERABLE, Reason.TEMPLATE_PAUSED,
    Reason.TEMPLATE_DISABLED, Reason.TEMPLATE_INVALID, Reason.OUTSIDE_SERVICE_WINDOW,
})  # fmt: skip
"""The reasons a provider's failed receipt may give (mapped by the part that read the receipt)."""


def receipt_reason(failed: bool, provider_code: str | None) -> Reason | None:
    """The reason a receipt gives its message: none unless it reports a failure; then the
    receipt's code if it names one of `RECEIPT_REASONS`, else `undeliverable` (the provider's
    own code stays in the provider receipts table)."""
    if not failed:
        return None
    if provider_code in RECEIPT_REASONS:
        return Reason(provider_code)
    return Reason.UNDELIVERABLE
