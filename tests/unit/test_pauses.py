"""The worker's pause policy: class priority, a full class's hysteresis, the retry heap and the
in-hand bound (services/herald_worker/pauses.py)."""

from __future__ import annotations

from herald.domain.models import Category
from herald_worker.pauses import PausePolicy

AUTH, UTIL, MKT = Category.AUTHENTICATION, Category.UTILITY, Category.MARKETING
PARTITIONS = {c: [f"{c.value}-{i}" for i in range(3)] for c in (AUTH, UTIL, MKT)}
RETRY = ["retry-0", "retry-1"]
ALL = {p for ps in PARTITIONS.values() for p in ps} | set(RETRY)


def _decide(
    policy: PausePolicy[str],
    *,
    buffered: dict[Category, int] | None = None,
    unfetched: dict[str, int] | None = None,
    held: int = 0,
    in_hand: int = 0,
) -> set[str]:
    waiting = {AUTH: 0, UTIL: 0, MKT: 0} | (buffered or {})
    backlog = unfetched or {}
    return policy.paused(
        PARTITIONS, RETRY, buffered=waiting, unfetched=lambda p: backlog.get(p, 0), held=held, in_hand=in_hand
    )


def _policy() -> PausePolicy[str]:
    return PausePolicy(buffer_per_class=100, retry_hold_max=50, max_in_flight=10)


def test_nothing_is_paused_when_nothing_is_waiting() -> None:
    assert _decide(_policy()) == set()


def test_a_higher_class_backlog_on_the_broker_pauses_every_lower_class() -> None:
    policy = _policy()
    assert _decide(policy, unfetched={"authentication-1": 5}) == set(PARTITIONS[UTIL] + PARTITIONS[MKT])
    assert _decide(policy, unfetched={"utility-2": 1}) == set(PARTITIONS[MKT])
    # A marketing backlog pauses nothing: nothing ranks below it.
    assert _decide(policy, unfetched={"marketing-0": 1_000_000}) == set()
    # Retry records carry their own class and wait for their time: priority does not pause them.
    assert not _decide(policy, unfetched={"authentication-0": 5}) & set(RETRY)


def test_a_full_class_resumes_only_once_half_its_buffer_is_spent() -> None:
    policy = _policy()
    assert _decide(policy, buffered={MKT: 99}) == set()
    assert _decide(policy, buffered={MKT: 100}) == set(PARTITIONS[MKT])
    # One place free is not enough: resuming now would be paused again at the next fetch and
    # throw the prefetch away each time.
    assert _decide(policy, buffered={MKT: 99}) == set(PARTITIONS[MKT])
    assert _decide(policy, buffered={MKT: 51}) == set(PARTITIONS[MKT])
    assert _decide(policy, buffered={MKT: 50}) == set()
    # ... and below the mark it stays resumed until full again.
    assert _decide(policy, buffered={MKT: 99}) == set()


def test_classes_fill_independently() -> None:
    policy = _policy()
    assert _decide(policy, buffered={UTIL: 100}) == set(PARTITIONS[UTIL])
    assert _decide(policy, buffered={UTIL: 60, AUTH: 100}) == set(PARTITIONS[UTIL] + PARTITIONS[AUTH])
    assert _decide(policy, buffered={UTIL: 50, AUTH: 40}) == set()


def test_the_retry_heap_pauses_retry_partitions_only() -> None:
    policy = _policy()
    assert _decide(policy, held=49) == set()
    assert _decide(policy, held=50) == set(RETRY)


def test_too_much_in_hand_pauses_everything() -> None:
    policy = _policy()
    limit = 3 * 100 + 10  # three class buffers and the provider slots
    assert _decide(policy, in_hand=limit - 1) == set()
    assert _decide(policy, in_hand=limit) == ALL
