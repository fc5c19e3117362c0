"""The callback outbox's order on real Postgres: status order whatever the recording order, the
receipt's hold for its `sent`, and the kept `sent` row."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from herald.db import callbacks as outbox
from herald.domain.status import RANK, Status

HOLD = timedelta(seconds=10)
TENANT = uuid.uuid4()


RECEIPTS = {Status.DELIVERED, Status.READ}
"""What these tests record as a provider's receipt (the worker's own `failed` is not one)."""


async def _record(pool: asyncpg.Pool, message_id: uuid.UUID, *statuses: Status) -> int:
    """One recorded batch of `statuses` of one message; returns how many were stale."""
    return await outbox.record(
        pool,
        [
            outbox.Pending(message_id, TENANT, s.value, s.value.encode(), rank=RANK[s], follows_sent=s in RECEIPTS)
            for s in statuses
        ],
    )


async def _rows(pool: asyncpg.Pool, now: datetime | None = None) -> list[outbox.Due]:
    """What a dispatcher polling at `now` is handed, leased only until `now` (due again later)."""
    at = now or datetime.now(UTC)
    return await outbox.lease_due(pool, per_tenant=10, limit=100, hold=HOLD, lease=timedelta(0), now=at)


async def _due(pool: asyncpg.Pool, now: datetime | None = None) -> list[bytes]:
    return [row.payload for row in await _rows(pool, now)]


async def _deliver_all(pool: asyncpg.Pool) -> None:
    for row in await _rows(pool):
        await outbox.delivered(pool, row.id)


async def test_a_receipt_recorded_before_its_sent_waits_for_it(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.DELIVERED)
    assert await _due(pool) == []  # within the hold, and no `sent` yet
    await _record(pool, message, Status.SENT)
    assert await _due(pool) == [b"sent"]  # recorded second, goes first
    await _deliver_all(pool)
    assert await _due(pool) == [b"delivered"]
    await _deliver_all(pool)
    assert await _due(pool) == []
    # Delivered rows stay, without their payload, for later events of the message to find.
    kept = await pool.fetch("SELECT status, payload, delivered_at FROM callback_outbox ORDER BY rank")
    assert [(r["status"], bytes(r["payload"]), r["delivered_at"] is not None) for r in kept] == [
        ("sent", b"", True),
        ("delivered", b"", True),
    ]


async def test_a_receipt_after_its_sent_went_out_is_not_held(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.SENT)
    await _deliver_all(pool)
    await _record(pool, message, Status.READ)
    assert await _due(pool) == [b"read"]
    # A replayed `sent` finds its kept row and is not sent again.
    await _record(pool, message, Status.SENT)
    assert await _due(pool) == [b"read"]


async def test_a_receipt_recorded_in_the_same_batch_as_its_sent_follows_it_at_once(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.DELIVERED, Status.SENT)
    assert await _due(pool) == [b"sent"]
    await _deliver_all(pool)
    assert await _due(pool) == [b"delivered"]  # not held: its `sent` came in the same batch


async def test_past_the_hold_a_receipt_goes_out_alone_and_a_later_sent_never_goes(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.DELIVERED)
    assert await _due(pool) == []
    later = datetime.now(UTC) + HOLD + timedelta(seconds=1)
    [receipt] = await _rows(pool, later)
    assert receipt.payload == b"delivered"
    await outbox.delivered(pool, receipt.id)
    # The `sent`, held up past the hold, would tell the tenant the message went back to `sent`.
    assert await _record(pool, message, Status.SENT) == 1
    assert await _due(pool, later) == []
    # A replayed receipt finds its kept row: the tenant is not called twice.
    assert await _record(pool, message, Status.DELIVERED) == 0
    assert await _due(pool, later) == []
    # A higher status still goes.
    assert await _record(pool, message, Status.READ) == 0
    assert await _due(pool, later) == [b"read"]


async def test_a_lower_status_goes_first_while_the_higher_is_still_pending(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.FAILED)
    assert await _record(pool, message, Status.SENT) == 0  # not stale
    assert await _due(pool) == [b"sent"]


async def test_only_receipts_are_held(pool: asyncpg.Pool) -> None:
    # The worker's own `failed` (a permanent refusal) never had a `sent` to wait for.
    message = uuid.uuid4()
    await _record(pool, message, Status.FAILED)
    assert await _due(pool) == [b"failed"]


async def test_a_pending_lower_status_in_backoff_holds_the_higher(pool: asyncpg.Pool) -> None:
    message = uuid.uuid4()
    await _record(pool, message, Status.SENT, Status.DELIVERED)
    [sent] = await _rows(pool)
    await outbox.retry_later(pool, sent.id, timedelta(minutes=5), "http_503")
    assert await _due(pool) == []
    assert await _due(pool, datetime.now(UTC) + timedelta(minutes=6)) == [b"sent"]


async def test_purge_removes_kept_rows_delivered_before_the_cutoff(pool: asyncpg.Pool) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await _record(pool, first, Status.SENT)
    await _deliver_all(pool)
    cutoff = datetime.now(UTC) + timedelta(milliseconds=1)
    await _record(pool, second, Status.SENT)
    await pool.execute("UPDATE callback_outbox SET delivered_at = $1 WHERE message_id = $2", cutoff, second)
    assert await outbox.purge_delivered(pool, cutoff) == 1
    assert [r["message_id"] for r in await pool.fetch("SELECT message_id FROM callback_outbox")] == [second]


async def _lease(pool: asyncpg.Pool, now: datetime | None, seconds: float, per_tenant: int = 10) -> list[int]:
    """Ids leased for `seconds` by a dispatcher polling at `now` (None: the database's clock)."""
    lease = timedelta(seconds=seconds)
    rows = await outbox.lease_due(pool, per_tenant=per_tenant, limit=100, hold=HOLD, lease=lease, now=now)
    return [r.id for r in rows]


async def test_dispatchers_polling_at_once_never_lease_the_same_row(pool: asyncpg.Pool) -> None:
    for _ in range(40):
        await _record(pool, uuid.uuid4(), Status.SENT)
    now = datetime.now(UTC)
    for _ in range(5):  # several rounds: the race is decided by which poll locks a row first
        handed = await asyncio.gather(*(_lease(pool, now, 30, per_tenant=100) for _ in range(4)))
        flat = [i for ids in handed for i in ids]
        assert len(flat) == len(set(flat)), handed
        await pool.execute("UPDATE callback_outbox SET leased_until = NULL")
    assert len(flat) == 40


async def test_a_lease_keeps_a_row_until_it_ends_and_a_retry_gives_it_back(pool: asyncpg.Pool) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await _record(pool, first, Status.SENT)
    await _record(pool, second, Status.SENT)
    now = datetime.now(UTC)
    a, b = await _lease(pool, now, 30)
    assert await _lease(pool, now + timedelta(seconds=29), 30) == []  # another dispatcher: nothing
    assert await _lease(pool, now + timedelta(seconds=31), 30) == [a, b]  # the holder died: both back
    await outbox.retry_later(pool, a, timedelta(seconds=32), "http_503")  # from the database's now
    assert await _lease(pool, now + timedelta(seconds=33), 30) == [a]  # b is still leased


async def test_the_per_tenant_cap_counts_the_rows_in_flight_anywhere(pool: asyncpg.Pool) -> None:
    for _ in range(5):
        await _record(pool, uuid.uuid4(), Status.SENT)
    now = datetime.now(UTC)
    held = await _lease(pool, now, 30, per_tenant=2)
    assert len(held) == 2
    assert await _lease(pool, now, 30, per_tenant=2) == []  # a second dispatcher: the cap is spent
    await outbox.delivered(pool, held[0])
    assert len(await _lease(pool, now, 30, per_tenant=2)) == 1


async def test_leases_and_retries_run_on_the_database_clock(pool: asyncpg.Pool) -> None:
    # Dispatchers on hosts whose clocks disagree must agree on when a lease ends and a retry is
    # due: both are the database's now plus a duration, whatever the dispatcher's clock says.
    first, second = uuid.uuid4(), uuid.uuid4()
    await _record(pool, first, Status.SENT)
    await _record(pool, second, Status.SENT)
    db_now = await pool.fetchval("SELECT now()")
    a, b = await _lease(pool, None, 30)
    leased = await pool.fetch("SELECT leased_until FROM callback_outbox ORDER BY id")
    assert all(timedelta(seconds=30) <= r["leased_until"] - db_now < timedelta(seconds=31) for r in leased)
    await outbox.retry_later(pool, a, timedelta(seconds=60), "http_503")
    due = await pool.fetchval("SELECT next_attempt_at FROM callback_outbox WHERE id = $1", a)
    assert timedelta(seconds=60) <= due - db_now < timedelta(seconds=61)
    assert await _lease(pool, None, 30) == []  # a leased, b in backoff, both by the database's clock
    assert await _lease(pool, db_now + timedelta(seconds=61), 30) == [a, b]
