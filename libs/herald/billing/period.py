"""Billing periods: calendar months in UTC, written `YYYY-MM`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec

from herald.domain.patterns import whole
from herald.errors import InvalidRequest

MONTH_PATTERN = whole(r"(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])")
"""YYYY-MM from 1970-01 to 2999-12 (bounded so that every month and its successor are valid times)."""
_MONTH = re.compile(MONTH_PATTERN)


class Month(msgspec.Struct, frozen=True):
    """[start, end) of one UTC calendar month."""

    label: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str, field: str = "month") -> Month:
        if not _MONTH.match(text):
            raise InvalidRequest.field(field, "expected YYYY-MM", code="invalid_month")
        year, month = int(text[:4]), int(text[5:])
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return cls(label=text, start=start, end=end)

    @classmethod
    def of(cls, at: datetime) -> Month:
        return cls.parse(f"{at.astimezone(UTC):%Y-%m}")
