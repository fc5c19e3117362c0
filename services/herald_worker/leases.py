"""The partitions this worker owns, each as an object that lives as long as the ownership.

A `Lease` is created when the group assigns a partition and closed when the partition is
revoked; it never reopens (a partition assigned back gets a new lease). Work begun under a lease
asks that lease whether it may still act, never a lookup by partition: an admission that waited
on the database across a rebalance finds its lease closed even if the partition came straight
back, because the new owner (maybe this worker again) reads those records again from the last
commit. What is known about a partition for one ownership only lives on its lease and dies
with it: how far it was fetched, and the deferral notes an earlier owner left.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from herald.db.claims import Deferral

P = TypeVar("P", bound=Hashable)


class Lease(Generic[P]):
    __slots__ = ("fetched_next", "notes", "open", "partition")

    def __init__(self, partition: P) -> None:
        self.partition = partition
        self.open = True
        self.fetched_next: int | None = None
        """The offset after the last record fetched under this lease (lag, pauses)."""
        self.notes: dict[int, Deferral] | None = None
        """Offset -> the deferral an earlier owner noted for the record there, loaded once with
        the lease's first records (None until then); each is forgotten once matched."""

    def close(self) -> None:
        self.open = False


class Leases(Generic[P]):
    def __init__(self) -> None:
        self._held: dict[P, Lease[P]] = {}

    def grant(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            if (old := self._held.get(partition)) is not None:
                old.close()
            self._held[partition] = Lease(partition)

    def revoke(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            if (lease := self._held.pop(partition, None)) is not None:
                lease.close()

    def of(self, partition: P) -> Lease[P] | None:
        """The partition's open lease, if this worker owns it."""
        return self._held.get(partition)

    def __iter__(self) -> Iterator[Lease[P]]:
        return iter(list(self._held.values()))
