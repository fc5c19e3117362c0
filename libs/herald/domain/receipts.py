"""What a provider's receipt may change, decided from Herald's own record of the send.

A receipt is a provider's word about one of *its* ids. Herald binds it to a message through its
own record of that send (`provider_messages`: which provider took which message, for which
tenant, when), so a receipt can only ever speak about a message that was sent through the very
provider that signed it, and never names a tenant. (A send whose record was lost in a worker
crash is found by the message id Herald attached to it, if the provider echoes it, and only
among the messages Herald recorded sending through that provider: `Reported.callback_data`.)
Then:

- its time is clamped to the message's own life: not before the send was recorded, not after
  the receipt reached Herald (a provider's clock, or a forger's, cannot date a status in 1970
  or 2100, or move a bill to another month);
- a status never goes back: the first final status a provider reports for a message
  (`delivered` or `failed`) stands; a later contradicting one (`failed` after `delivered`,
  `delivered` after `failed`, `read` after `failed`) is a *late report*, kept apart and counted,
  never the status.
"""

from __future__ import annotations

import uuid

import msgspec

from herald.domain.models import Category
from herald.domain.status import Status

RECEIPT_STATUSES = frozenset({Status.DELIVERED, Status.READ, Status.FAILED})
"""What a provider may report. `sent` and `expired` are Herald's own."""
FINAL_REPORTS = frozenset({Status.DELIVERED, Status.FAILED})


class Reported(msgspec.Struct, frozen=True):
    """A receipt as the provider sent it: its id for the send, a status, maybe a time and a code."""

    provider_message_id: str
    status: Status
    at_ms: int | None = None
    reason: str | None = None
    callback_data: uuid.UUID | None = None
    """What Herald attached to the send, echoed back (its message id). Never trusted on its own:
    it binds only a receipt whose provider id Herald has no record of (the worker died before
    publishing that send's `sent`, and the message went out again), and only to a message Herald
    recorded sending through the same provider."""
    pricing_category: Category | None = None
    """The category the provider bills the message in (WhatsApp's `pricing.category`)."""
    billable: bool | None = None
    provider_error: str | None = None
    """The provider's own code and words for a failure (`131026 Message undeliverable`): kept
    with the receipt, while `reason` is Herald's."""


class Waiting(msgspec.Struct, frozen=True):
    """A recorded receipt whose send Herald knows: what binding needs."""

    provider: str
    provider_message_id: str
    status: Status
    reported_ms: int | None
    received_ms: int
    reason: str | None
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    sent_ms: int
    pricing_category: Category | None = None
    billable: bool | None = None
    provider_error: str | None = None


def effective_time(reported_ms: int | None, sent_ms: int, received_ms: int) -> int:
    """The provider's time, within [the send, the receipt's arrival]; the arrival if it gave none."""
    upper = max(sent_ms, received_ms)
    return min(max(reported_ms if reported_ms is not None else upper, sent_ms), upper)


def contradicts(final: Status | None, status: Status) -> bool:
    """True when `status` goes back on the message's first final report `final`."""
    if final is None:
        return False
    if status in FINAL_REPORTS:
        return status is not final
    return status is Status.READ and final is Status.FAILED


def first_finals(waiting: list[Waiting]) -> dict[uuid.UUID, Status]:
    """Per message, the first final report among `waiting` (which is in arrival order)."""
    found: dict[uuid.UUID, Status] = {}
    for w in waiting:
        if w.status in FINAL_REPORTS:
            found.setdefault(w.message_id, w.status)
    return found
