"""Readiness of a consumer process: it has joined every consumer group it belongs to.

A worker or sinks process whose broker and database answer is still not doing its job until the
group coordinator has given it an assignment (an empty one counts: the group has more members
than partitions). Until then, messages accepted by the API wait, and a newcomer's first message
reads 404 for seconds. `/readyz` says so (`herald.ops`), the deploy manifests' readiness probes
use it, and `herald dev` prints its banner only once every child is ready.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition


class Membership:
    """The groups a process expects to join, and those it has."""

    def __init__(self) -> None:
        self._expected: set[str] = set()
        self._joined: set[str] = set()

    def expect(self, groups: Iterable[str]) -> None:
        """Every group the process will join, before the first consumer starts (so that joining
        one is not mistaken for joining all)."""
        self._expected.update(groups)

    def listener(self, group: str, inner: ConsumerRebalanceListener | None = None) -> ConsumerRebalanceListener:
        """The rebalance listener to subscribe `group`'s consumer with (`inner`, if given, is told too)."""
        self._expected.add(group)
        return _Joining(self, group, inner)

    def joined(self, group: str) -> None:
        self._joined.add(group)

    def check(self) -> dict[str, str]:
        """`{"groups": "ok"}` once every expected group has assigned partitions to this process."""
        waiting = sorted(self._expected - self._joined)
        if not self._expected:
            return {"groups": "not started"}
        return {"groups": "ok" if not waiting else f"joining {', '.join(waiting)}"}


class _Joining(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: Membership, group: str, inner: ConsumerRebalanceListener | None) -> None:
        self._membership = membership
        self._group = group
        self._inner = inner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if self._inner is not None:
            await self._inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        if self._inner is not None:
            await self._inner.on_partitions_assigned(assigned)
        self._membership.joined(self._group)
