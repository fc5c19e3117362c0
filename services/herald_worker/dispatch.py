"""Dispatch: which waiting message is sent next, and when, with at most `max_in_flight` in flight.

The scheduler's next message goes to `send` while a slot is free; a tenant is skipped while its
pacer (the shared token bucket) has no token, and every tenant while the provider gate (the
provider's capacity, its Retry-After) is not ready. With nothing ready, dispatch sleeps until the
earliest moment something may be: a recipient lane's rest, a timer's due time, the gate's
opening, or a `wake()` (a message arrived, a send finished, a token may have come).

Each send runs as a task held per partition, so a revocation waits for its partitions' sends and
the drain for every one. After `stop()`, or once the process's stop event is set, nothing new
starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Hashable
from typing import Protocol

from herald import clock
from herald.domain.models import KeyKind
from herald_worker.scheduler import Item, Scheduler
from herald_worker.timer import RetryTimer


class Gate(Protocol):
    """The provider's capacity (`provider_gate.ProviderGate`)."""

    def ready(self) -> bool: ...
    def take(self, message_id: uuid.UUID | None = None) -> None: ...
    def settle(self, message_id: uuid.UUID) -> None: ...
    def opens_at(self) -> float | None: ...


class Pacer(Protocol):
    """The tenants' token buckets (`pacing.BucketPacer`)."""

    def try_take(self, tenant_id: uuid.UUID) -> bool: ...


class Suspensions(Protocol):
    """Which tenants are suspended (`pacing.TenantRates`)."""

    def suspended(self, tenant_id: uuid.UUID) -> bool: ...


class Dispatch:
    def __init__(
        self,
        scheduler: Scheduler,
        timer: RetryTimer,
        gate: Gate,
        pacer: Pacer,
        suspensions: Suspensions,
        max_in_flight: int,
        release_due: Callable[[], None],
        wake: asyncio.Event,
        gated: Callable[[Item], bool] = lambda _: True,
    ) -> None:
        """`release_due` moves the timer's due messages to the scheduler (or settles them);
        `wake` is the event the pacer and the gate set when a token may have come; `gated(item)`
        says whether the item's provider is the one `gate` holds (a channel whose provider gates
        itself, per account or number, is never held by it)."""
        self._gated = gated
        self._scheduler = scheduler
        self._timer = timer
        self._gate = gate
        self._suspensions = suspensions
        self._release_due = release_due
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pacer = pacer
        self._wake = wake
        self._tasks: dict[asyncio.Task[None], Hashable] = {}
        self._stopping = False
        self._requested = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Start nothing more: a slot that comes free stays free, the loop returns."""
        self._stopping = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """`stop()` was called or the stop event given to `run` is set."""
        return self._stopping or self._requested.is_set()

    def held_back(self, item: Item) -> bool:
        """A suspended tenant's message goes back on herald.retry, unsent."""
        return self._suspensions.suspended(item.message.tenant_id)

    async def run(
        self, send: Callable[[Item], Coroutine[None, None, None]], requested: asyncio.Event | None = None
    ) -> None:
        """Until `stop()` or `requested`: take a slot, wait for a message that may go, start
        `send(item)`. `send` must call `finished(item)` once the provider call is over.

        `requested` is the process's stop event (SIGTERM), read before every start: the drain's
        `stop()` comes a few loop turns after the signal, and a slot that comes free in those
        turns (a worker stalled across the signal resumes with replies and the signal at once)
        must not start a send the signal came before."""
        if requested is not None:
            self._requested = requested
        while not self.stopping:
            await self._slots.acquire()
            item = None if self.stopping else self._next()
            while item is None and not self.stopping:
                self._wake.clear()
                await self._sleep_until_something_may_be_ready()
                if not self.stopping:
                    self._release_due()
                    item = self._next()
            if item is None:
                # The slot came free during the drain: start nothing the drain is not waiting for.
                self._slots.release()
                return
            self.start(send(item), item.partition)

    def finished(self, item: Item) -> None:
        """The provider call for `item` is over (sent, failed or held back): its slot, its gate
        token and its recipient lane are free. Publishing the outcome happens outside the slot:
        it waits for broker acks, and an OTP must not wait for a slot while others wait for acks."""
        self._gate.settle(item.message.id)
        self._scheduler.done(item)
        self._slots.release()
        self._wake.set()

    def start(self, work: Coroutine[None, None, None], partition: Hashable) -> None:
        """Run `work` as a task that a revocation of `partition`, and the drain, wait for."""
        task = asyncio.create_task(work)
        self._tasks[task] = partition
        task.add_done_callback(self._forget)

    def in_flight(self, partitions: Collection[Hashable] | None = None) -> list[asyncio.Task[None]]:
        """The tasks started for `partitions` (every task if None) that are still running."""
        return [t for t, p in self._tasks.items() if partitions is None or p in partitions]

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _next(self) -> Item | None:
        """The scheduler's next message if the provider can take one now. The gate is asked inside
        the scheduler's choice, for a tenant with a ready message, so class order decides who gets
        the provider's next token."""
        item = self._scheduler.take(self._allow, self._admit)
        if (
            item is not None
            and item.message.key_kind is not KeyKind.TEST
            and not self.held_back(item)
            and self._gated(item)
        ):
            self._gate.take(item.message.id)
        return item

    def _admit(self, item: Item) -> bool:
        """The gate is asked only for a message its provider would carry (a suspended tenant's
        goes back on herald.retry without the provider)."""
        return not self._gated(item) or self._gate.ready() or self.held_back(item)

    def _allow(self, tenant_id: uuid.UUID) -> bool:
        if self._suspensions.suspended(tenant_id):
            return True  # to go back on herald.retry, unsent: it needs no token and no provider
        return self._pacer.try_take(tenant_id)

    async def _sleep_until_something_may_be_ready(self) -> None:
        deadlines = [0.5]
        if (resting := self._scheduler.next_wakeup()) is not None:
            deadlines.append(resting - time.monotonic())
        if (due_ms := self._timer.next_ms()) is not None:
            deadlines.append((due_ms - clock.now_ms()) / 1000)
        if (opens := self._gate.opens_at()) is not None:
            deadlines.append(opens - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.001, min(deadlines)))
