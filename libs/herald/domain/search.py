"""Finding things again: the filters and cursors of the newest-first listings (a tenant's
messages, the platform's tenants).

A listing is ordered by creation time, newest first, ties broken by id; a page ends with a
cursor naming its last item (`Cursor`), and the next page starts strictly after it. Keyset
pages stay as fast on page 10,000 as on page 1 and never repeat or skip an item that existed
when the listing began, however many arrive meanwhile (new items are newer than every cursor).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from herald.domain.models import Channel, Tier
from herald.domain.status import Status
from herald.errors import InvalidRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cursor(msgspec.Struct, frozen=True):
    """A position in a newest-first listing: its last item's creation time and id."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return base64.urlsafe_b64encode(f"{micros}.{self.id.hex}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, field: str = "after") -> Cursor:
        """Raises InvalidRequest (`invalid_cursor`) for anything `encode` did not write."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros, _, hex_id = raw.partition(".")
            return cls(_EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=hex_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
            raise InvalidRequest.field(field, "not a cursor this listing returned", code="invalid_cursor") from exc


class MessageSummary(msgspec.Struct, frozen=True):
    """A message as a listing shows it: its envelope and status, not its timeline."""

    id: uuid.UUID
    status: Status
    channel: Channel
    category: str
    template_name: str
    template_language: str
    template_version: int
    reference: str | None
    created_at: datetime
    updated_at: datetime
    segments: int


class TimeRange(msgspec.Struct, frozen=True):
    created_after: datetime | None = None
    """Inclusive."""
    created_before: datetime | None = None
    """Exclusive."""

    def checked(self) -> TimeRange:
        """Raises InvalidRequest (`invalid_time_range`) for a time without its offset (whose
        instant is unknown) or an empty or reversed range."""
        for field, value in (("created_after", self.created_after), ("created_before", self.created_before)):
            if value is not None and value.utcoffset() is None:
                raise InvalidRequest.field(field, "needs a UTC offset (2026-12-05T10:00Z)", code="invalid_time_range")
        if self.created_after and self.created_before and self.created_after >= self.created_before:
            raise InvalidRequest.field("created_before", "must be after created_after", code="invalid_time_range")
        return self


class MessageFilter(msgspec.Struct, frozen=True):
    """What a tenant's message listing keeps; every given field must match."""

    status: Status | None = None
    reference: str | None = None
    template: str | None = None
    channel: Channel | None = None
    window: TimeRange = TimeRange()
    campaign: uuid.UUID | None = None


class TenantFilter(msgspec.Struct, frozen=True):
    tier: Tier | None = None
    suspended: bool | None = None
    window: TimeRange = TimeRange()
