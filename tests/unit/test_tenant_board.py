"""The tenant board names the worst few tenants over a sliding window, and only them."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from herald import metrics
from herald.db.messages import Transition
from herald.domain.status import Status
from herald_sinks.tenant_board import MIN_DELIVERED, WINDOW_MINUTES, TenantBoard
from tests.unit.fakes import Clock


def _final(tenant: uuid.UUID, status: Status, seconds: float = 1.0) -> Transition:
    return Transition(tenant, "utility", "sms", status, seconds)


def _shown(name: str) -> dict[str, float]:
    return {s.labels["tenant"]: s.value for m in REGISTRY.collect() for s in m.samples if s.name == name}


def test_the_tenants_with_most_undelivered_are_named_worst_first_at_most_ten() -> None:
    clock = Clock()
    board = TenantBoard(clock)
    tenants = [uuid.uuid4() for _ in range(30)]
    for rank, tenant in enumerate(tenants):
        board.add([_final(tenant, Status.FAILED)] * (rank + 1) + [_final(tenant, Status.EXPIRED)])
        board.add([_final(tenant, Status.DELIVERED)] * 5)
    undelivered, _ = board.worst()
    assert [t for t, _ in undelivered] == tenants[::-1][: metrics.SHOWN_TENANTS]
    assert undelivered[0][1] == 31  # 30 failed and one expired
    board.export()
    shown = _shown("herald_tenant_undelivered_messages")
    assert {str(t) for t in tenants[-metrics.SHOWN_TENANTS :]} <= shown.keys()
    assert not {str(t) for t in tenants[: -metrics.SHOWN_TENANTS]} & shown.keys()


def test_the_window_slides_and_a_tenant_that_recovered_loses_its_series() -> None:
    clock = Clock()
    board = TenantBoard(clock)
    bad, slow, quick = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    board.add([_final(bad, Status.FAILED)] * 3)
    board.add([_final(slow, Status.DELIVERED, 30.0)] * MIN_DELIVERED)
    board.add([_final(quick, Status.DELIVERED, 0.5)] * MIN_DELIVERED)
    board.add([_final(uuid.uuid4(), Status.DELIVERED, 99.0)] * (MIN_DELIVERED - 1))  # too few to say
    undelivered, slowest = board.worst()
    assert undelivered == [(bad, 3)]
    assert slowest == [(slow, 30.0), (quick, 0.5)]
    board.export()
    assert str(bad) in _shown("herald_tenant_undelivered_messages")
    clock.now += 60 * (WINDOW_MINUTES - 1)
    board.add([_final(bad, Status.FAILED)])
    assert board.worst()[0] == [(bad, 4)]
    clock.now += 61  # the first minute's bin leaves the window
    assert board.worst()[0] == [(bad, 1)]
    clock.now += 60 * WINDOW_MINUTES
    board.export()
    assert board.worst() == ([], [])
    assert str(bad) not in _shown("herald_tenant_undelivered_messages")
    assert str(slow) not in _shown("herald_tenant_mean_final_seconds")
