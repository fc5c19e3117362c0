from __future__ import annotations

import itertools

import pytest

from herald.domain.status import Status, fold, may_advance

S = Status


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (S.ACCEPTED, S.SENT, True),
        (S.SENT, S.DELIVERED, True),
        (S.DELIVERED, S.SENT, False),  # a late `sent` never overwrites `delivered`
        (S.DELIVERED, S.READ, True),
        (S.READ, S.DELIVERED, False),
        (S.FAILED, S.DELIVERED, False),  # failed is final
        (S.EXPIRED, S.SENT, False),
        (S.SENT, S.FAILED, True),
        (S.DELIVERED, S.FAILED, False),
    ],
)
def test_may_advance(current: Status, new: Status, expected: bool) -> None:
    assert may_advance(current, new) is expected


def test_fold_of_no_events_is_accepted() -> None:
    assert fold([]) is S.ACCEPTED


def test_fold_is_independent_of_arrival_order() -> None:
    events = [(100, S.SENT), (150, S.DELIVERED), (400, S.READ)]
    assert {fold(list(p)) for p in itertools.permutations(events)} == {S.READ}


def test_fold_ignores_replayed_events() -> None:
    events = [(100, S.SENT), (150, S.DELIVERED)]
    assert fold(events + events) is S.DELIVERED


def test_fold_keeps_the_first_final_status_in_time() -> None:
    assert fold([(200, S.DELIVERED), (100, S.SENT), (300, S.FAILED)]) is S.DELIVERED
    assert fold([(100, S.FAILED), (200, S.DELIVERED)]) is S.FAILED
