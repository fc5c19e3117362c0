"""Message status lifecycle and the monotonic rule the projection enforces.

    (scheduled ->) accepted -> sending -> sent -> delivered -> read
                                             \\-> failed
          (any non-final) ------> expired / failed
          (scheduled, accepted) -> cancelled

A message sent with `send_at` is `scheduled` until its time, then `accepted` like any other.
`cancelled` is reached only before a provider had the message (`DELETE /v1/messages/{id}`).
A status only moves forward: a late `sent` never overwrites `delivered`. `failed` and `expired`
absorb everything after them. `read` implies `delivered`, so it is taken even if the
`delivered` receipt is late or lost.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"
    ACCEPTED = "accepted"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


RANK: dict[Status, int] = {
    Status.SCHEDULED: -1,
    Status.ACCEPTED: 0,
    Status.SENDING: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.FAILED: 3,
    Status.EXPIRED: 3,
    Status.CANCELLED: 3,
    Status.READ: 4,
}
FINAL: frozenset[Status] = frozenset({Status.DELIVERED, Status.FAILED, Status.EXPIRED, Status.READ, Status.CANCELLED})
ABSORBING: frozenset[Status] = frozenset({Status.FAILED, Status.EXPIRED, Status.CANCELLED})


def may_advance(current: Status, new: Status) -> bool:
    """True when `new` replaces `current` in the projection (the SQL in db/messages mirrors this)."""
    if current in ABSORBING:
        return False
    return RANK[new] > RANK[current]


def fold(events: list[tuple[int, Status]], start: Status = Status.ACCEPTED) -> Status:
    """The status reached from `start` by applying `(at_ms, status)` events in time order.

    The projection recomputes from the full event set, so it does not depend on the order in
    which the sink happens to read the message topic and the events topic, and replaying events
    changes nothing.
    """
    result = start
    for _, status in sorted(events, key=lambda e: (e[0], RANK[e[1]])):
        if may_advance(result, status):
            result = status
    return result
