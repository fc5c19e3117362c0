"""The rules a provider receipt is held to (herald.domain.receipts)."""

from __future__ import annotations

import uuid

import pytest

from herald.domain.receipts import Waiting, contradicts, effective_time, first_finals
from herald.domain.status import Status

SENT, RECEIVED = 1_800_000_000_000, 1_800_000_005_000


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (SENT + 1_000, SENT + 1_000),  # a plausible time is kept
        (0, SENT),  # 1970: never before the send
        (SENT - 1, SENT),
        (4_102_444_800_000, RECEIVED),  # 2100: never after it reached Herald
        (None, RECEIVED),  # no time given: when it arrived
    ],
)
def test_a_receipts_time_is_clamped_to_the_messages_life(reported: int | None, expected: int) -> None:
    assert effective_time(reported, SENT, RECEIVED) == expected


def test_a_receipt_arriving_before_the_send_was_recorded_is_dated_at_the_send() -> None:
    # The worker stamps `sent` when the provider answers; a fast receipt can beat that stamp.
    assert effective_time(None, RECEIVED + 10, RECEIVED) == RECEIVED + 10


@pytest.mark.parametrize(
    ("final", "status", "late"),
    [
        (None, Status.FAILED, False),
        (Status.DELIVERED, Status.DELIVERED, False),  # a replay
        (Status.DELIVERED, Status.READ, False),
        (Status.DELIVERED, Status.FAILED, True),  # the finding: failed after delivered
        (Status.FAILED, Status.DELIVERED, True),
        (Status.FAILED, Status.READ, True),
        (Status.FAILED, Status.FAILED, False),
    ],
)
def test_a_status_never_goes_back(final: Status | None, status: Status, late: bool) -> None:
    assert contradicts(final, status) is late


def test_the_first_final_report_in_arrival_order_decides() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()

    def w(message: uuid.UUID, status: Status) -> Waiting:
        return Waiting("p", "x", status, None, RECEIVED, None, message, uuid.uuid4(), SENT)

    batch = [w(a, Status.READ), w(a, Status.FAILED), w(a, Status.DELIVERED), w(b, Status.DELIVERED)]
    assert first_finals(batch) == {a: Status.FAILED, b: Status.DELIVERED}
