"""The ledger's closed vocabulary: what a row of a billing period is."""

from __future__ import annotations

from enum import StrEnum


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
