"""Readiness of a consumer process: ready once it has joined every group it expects."""

from __future__ import annotations

from aiokafka import TopicPartition

from herald.kafka.membership import Membership


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_partitions_revoked(self, revoked: object) -> None:
        self.calls.append("revoked")

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.calls.append("assigned")


async def test_ready_only_once_every_expected_group_assigned_partitions() -> None:
    membership = Membership()
    assert membership.check() == {"groups": "not started"}
    membership.expect(["status", "billing"])
    status = membership.listener("status")
    inner = _Recorder()
    billing = membership.listener("billing", inner)  # type: ignore[arg-type]
    await status.on_partitions_assigned({TopicPartition("t", 0)})
    assert membership.check() == {"groups": "joining billing"}
    await billing.on_partitions_revoked(set())
    await billing.on_partitions_assigned(set())  # an empty assignment is still a join
    assert membership.check() == {"groups": "ok"}
    assert inner.calls == ["revoked", "assigned"]
