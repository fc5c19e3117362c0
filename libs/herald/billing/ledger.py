"""The ledger's closed vocabulary: what a row of a billing period is."""

from __future__ import annotations

import uuid
from enum import StrEnum

from herald.errors import InvalidRequest


class RowKind(StrEnum):
    USAGE = "usage"
    """A billable message, in the month of its billing time."""
    ADJUSTMENT = "adjustment"
    """A billable message whose billing time fell in a month already closed: posted to the first
    open month, keeping its billing time."""


class EntryKind(StrEnum):
    CREDIT = "credit"
    """Money given back (stored negative)."""
    CORRECTION = "correction"
    """A signed amount that corrects a ledger row or another entry."""


def posted_amount(
    kind: EntryKind, amount_micros: int, corrects_message_id: uuid.UUID | None, corrects_entry_id: uuid.UUID | None
) -> int:
    """What an entry does to the bill, from what the billing team typed: a credit is given as
    the (positive) amount credited and posted negative; a correction is signed as given and
    must name what it corrects. Raises InvalidRequest naming the field."""
    if kind is EntryKind.CREDIT:
        if amount_micros <= 0:
            raise InvalidRequest.field("amount_micros", "a credit is a positive amount", code="invalid_entry")
        return -amount_micros
    if corrects_message_id is None and corrects_entry_id is None:
        raise InvalidRequest.field("corrects_message_id", "a correction names what it corrects", code="invalid_entry")
    return amount_micros
