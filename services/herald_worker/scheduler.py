"""Which fetched message goes to a provider next.

Order, highest first:
1. **Class**: authentication before utility before marketing. A marketing message is taken only
   when no authentication or utility message is ready, so an OTP waits at most for one free
   provider slot, never behind a campaign (the fetch side also pauses lower-class partitions,
   see `pipeline.py`).
2. **Tenant**: round robin among the tenants with ready messages in the class, skipping those
   whose pacer has no token right now, so one tenant's backlog or rate limit never holds
   another tenant's messages.
3. **Recipient lane** (tenant + recipient): messages in arrival order, at most one in flight,
   and `recipient_gap` seconds between the end of one send and the start of the next (the
   WhatsApp pair-rate rule). The lane is shared by all classes: an OTP to a recipient who just
   got a promotion waits for the gap too. Later messages wait; they are never failed for it.

Pure and synchronous: the pipeline calls `add` as records arrive, `take` when a slot is free,
`done` when a send finished, and sleeps until `next_wakeup` when nothing is ready.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from herald.domain.models import Category
from herald.domain.records import OutboundMessage, SealedMessageV2

PRIORITY: tuple[Category, ...] = (Category.AUTHENTICATION, Category.UTILITY, Category.MARKETING)

LaneKey = tuple[uuid.UUID, str]


@dataclass(eq=False, slots=True)
class Item:
    message: OutboundMessage
    partition: Hashable
    offset: int
    sealed: SealedMessageV2
    """The record as read: what goes back on a topic (retry, dead letter) keeps this content."""


@dataclass(slots=True)
class _Lane:
    queues: dict[Category, deque[Item]] = field(default_factory=dict)
    busy_until: float = 0.0
    """math.inf while a message is in flight; then the end of the recipient gap."""
    listed: set[Category] = field(default_factory=set)
    """Classes whose ready list holds this lane."""


@dataclass(slots=True)
class _TenantQueue:
    ready: deque[LaneKey] = field(default_factory=deque)
    count: int = 0


@dataclass(slots=True)
class _ClassQueue:
    tenants: dict[uuid.UUID, _TenantQueue] = field(default_factory=dict)
    rotation: deque[uuid.UUID] = field(default_factory=deque)


class Scheduler:
    def __init__(self, recipient_gap_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._gap = recipient_gap_seconds
        self._clock = clock
        self._classes = {c: _ClassQueue() for c in PRIORITY}
        self._lanes: dict[LaneKey, _Lane] = {}
        self._cooling: list[tuple[float, int, LaneKey]] = []
        self._sequence = itertools.count()
        self.buffered: dict[Category, int] = dict.fromkeys(PRIORITY, 0)
        """Messages waiting (not in flight), per class."""

    def __len__(self) -> int:
        return sum(self.buffered.values())

    def oldest_accepted_ms(self) -> int | None:
        """When the longest-waiting buffered message was accepted (None: none waits). Reads the
        head of every lane's queues: for a scrape, not for the send path."""
        heads = (
            queue[0].message.created_at_ms for lane in self._lanes.values() for queue in lane.queues.values() if queue
        )
        return min(heads, default=None)

    def waiting(self, tenant_id: uuid.UUID, category: Category) -> int:
        tenant = self._classes[category].tenants.get(tenant_id)
        return 0 if tenant is None else tenant.count

    def add(self, item: Item) -> None:
        m = item.message
        key = (m.tenant_id, m.to)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queues.setdefault(m.category, deque()).append(item)
        queue = self._classes[m.category]
        tenant = queue.tenants.get(m.tenant_id)
        if tenant is None:
            tenant = queue.tenants[m.tenant_id] = _TenantQueue()
            queue.rotation.append(m.tenant_id)
        tenant.count += 1
        self.buffered[m.category] += 1
        if lane.busy_until == 0.0:
            self._list(key, lane, m.category)

    def take(self, allow: Callable[[uuid.UUID], bool], admit: Callable[[Item], bool] | None = None) -> Item | None:
        """The next message to send, or None. `allow(tenant)` is asked only for a tenant that has
        a ready message, and must consume a token when it answers True. `admit(item)`, asked
        first and consuming nothing, may pass over a tenant whose next message cannot go now
        (its provider's gate is shut) without spending that tenant's token."""
        self._cool_down()
        for category in PRIORITY:
            queue = self._classes[category]
            for _ in range(len(queue.rotation)):
                tenant_id = queue.rotation[0]
                queue.rotation.rotate(-1)
                tenant = queue.tenants[tenant_id]
                key = self._ready_lane(tenant, category)
                if key is None:
                    continue
                if admit is not None and not admit(self._lanes[key].queues[category][0]):
                    continue
                if not allow(tenant_id):
                    continue
                return self._pop(key, tenant_id, tenant, category)
        return None

    def done(self, item: Item) -> None:
        """The send finished (whatever its outcome): the lane rests for the recipient gap."""
        m = item.message
        key = (m.tenant_id, m.to)
        lane = self._lanes[key]
        if self._gap <= 0:
            self._release(key, lane)
            return
        lane.busy_until = self._clock() + self._gap
        heapq.heappush(self._cooling, (lane.busy_until, next(self._sequence), key))

    def next_wakeup(self) -> float | None:
        """When a resting lane becomes ready (clock time), if any is resting."""
        return self._cooling[0][0] if self._cooling else None

    def drop(self, partitions: Iterable[Hashable]) -> int:
        """Forget the waiting messages read from `partitions` (revoked: the next owner reads them
        again). Lanes in flight or resting keep their state. Returns how many were dropped."""
        gone = set(partitions)
        keep: list[Item] = []
        dropped = 0
        for lane in self._lanes.values():
            for items in lane.queues.values():
                for item in items:
                    if item.partition in gone:
                        dropped += 1
                    else:
                        keep.append(item)
                items.clear()
            lane.listed.clear()
        self._classes = {c: _ClassQueue() for c in PRIORITY}
        self.buffered = dict.fromkeys(PRIORITY, 0)
        for key in [k for k, lane in self._lanes.items() if lane.busy_until == 0.0]:
            del self._lanes[key]
        for item in sorted(keep, key=lambda i: (str(i.partition), i.offset)):
            self.add(item)
        return dropped

    # --- internals -----------------------------------------------------------------------------
    def _list(self, key: LaneKey, lane: _Lane, category: Category) -> None:
        if category not in lane.listed:
            lane.listed.add(category)
            self._classes[category].tenants[key[0]].ready.append(key)

    def _ready_lane(self, tenant: _TenantQueue, category: Category) -> LaneKey | None:
        while tenant.ready:
            key = tenant.ready[0]
            lane = self._lanes.get(key)
            if lane is not None and lane.busy_until == 0.0 and lane.queues.get(category):
                return key
            # Taken by another class meanwhile, or emptied: unlisted until it is released.
            tenant.ready.popleft()
            if lane is not None:
                lane.listed.discard(category)
        return None

    def _pop(self, key: LaneKey, tenant_id: uuid.UUID, tenant: _TenantQueue, category: Category) -> Item:
        lane = self._lanes[key]
        item = lane.queues[category].popleft()
        tenant.ready.popleft()
        lane.listed.discard(category)
        lane.busy_until = math.inf
        tenant.count -= 1
        self.buffered[category] -= 1
        if tenant.count == 0:
            queue = self._classes[category]
            del queue.tenants[tenant_id]
            # `take` has just rotated this tenant to the end: popping it is O(1), where a
            # remove() scanned every tenant with messages waiting (10,000 on a busy platform).
            queue.rotation.pop()
        return item

    def _cool_down(self) -> None:
        now = self._clock()
        while self._cooling and self._cooling[0][0] <= now:
            _, _, key = heapq.heappop(self._cooling)
            lane = self._lanes.get(key)
            if lane is not None and lane.busy_until != math.inf and lane.busy_until <= now:
                self._release(key, lane)

    def _release(self, key: LaneKey, lane: _Lane) -> None:
        lane.busy_until = 0.0
        waiting = [c for c, items in lane.queues.items() if items]
        if not waiting:
            del self._lanes[key]
            return
        for category in waiting:
            self._list(key, lane, category)
