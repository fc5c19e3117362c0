"""The callback dispatcher's poll (`herald.db.callbacks.due`), which runs every 100 ms.

Fills a fresh database like a busy platform's outbox: `--kept` delivered `sent` rows (10 min of
callbacks at ~330/s are 200,000), 7,000 pending receipts recorded by `record` (5,000 of them
with their `sent` kept) and 5,000 pending `sent` rows over 20 tenants. Prints the poll's time per call with the receipts
inside their order hold and past it, beside the same poll without the ordering (session 5's
query: pending rows by id) on the same data, the ceiling it is compared to.

    .venv/bin/python -m loadtests.outbox [--kept 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from herald.db import callbacks as outbox
from herald.db.migrate import migrate
from herald.embedded import free_port
from herald.embedded.postgres import EmbeddedPostgres

HOLD = timedelta(seconds=10)
CALLS = 50
UNORDERED = """
    SELECT id, tenant_id, payload, attempts, created_at FROM (
        SELECT o.*, row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.id) AS turn
        FROM callback_outbox o
        WHERE o.dead_at IS NULL AND o.delivered_at IS NULL AND o.next_attempt_at <= $1
          AND NOT EXISTS (SELECT 1 FROM callback_outbox p WHERE p.message_id = o.message_id
                          AND p.dead_at IS NULL AND p.delivered_at IS NULL AND p.id < o.id)
    ) pending
    WHERE turn <= $2 ORDER BY id LIMIT $3"""


async def _fill(pool: asyncpg.Pool, kept: int) -> None:
    tenants = [uuid.uuid4() for _ in range(20)]
    await pool.execute(
        "INSERT INTO callback_outbox (tenant_id, message_id, status, payload, rank, delivered_at)"
        " SELECT ($2::uuid[])[1 + i % 20], gen_random_uuid(), 'sent', '', 2, now() FROM generate_series(1, $1) i",
        kept,
        tenants,
    )
    # The receipts through `record`, which decides whether each waits: 5,000 whose `sent` is kept
    # (they do not) and 2,000 whose `sent` has not been recorded (they do, until the hold passes).
    answered = await pool.fetch("SELECT tenant_id, message_id FROM callback_outbox LIMIT 5000")
    receipts = [(r["tenant_id"], r["message_id"]) for r in answered]
    receipts += [(tenants[i % 20], uuid.uuid4()) for i in range(2000)]
    for start in range(0, len(receipts), 500):
        await outbox.record(
            pool,
            [
                outbox.Pending(message_id, tenant_id, "delivered", b"x", rank=3, follows_sent=True)
                for tenant_id, message_id in receipts[start : start + 500]
            ],
        )
    await pool.execute(
        "INSERT INTO callback_outbox (tenant_id, message_id, status, payload, rank)"
        " SELECT ($1::uuid[])[1 + i % 20], gen_random_uuid(), 'sent', 'x', 2 FROM generate_series(1, 5000) i",
        tenants,
    )
    await pool.execute("VACUUM ANALYZE callback_outbox")


async def _poll(pool: asyncpg.Pool) -> list[outbox.Due]:
    """The dispatcher's poll (on the database's clock), its lease ending at once: every call
    leases the same rows again."""
    return await outbox.lease_due(pool, per_tenant=4, limit=500, hold=HOLD, lease=timedelta(0))


async def _ms_per_call(poll: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        await poll()
    return (time.perf_counter() - started) / CALLS * 1000


async def measure(dsn: str, kept: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await _fill(pool, kept)
        for label in ("receipts within their hold", "receipts past their hold"):
            ordered = await _ms_per_call(lambda: _poll(pool))
            unordered = await _ms_per_call(lambda: pool.fetch(UNORDERED, datetime.now(UTC), 4, 500))
            print(
                f"{label}: lease_due() {ordered:.1f} ms per poll; unordered poll (ceiling) {unordered:.1f} ms;"
                f" ratio {unordered / ordered:.2f}"
            )
            await pool.execute("UPDATE callback_outbox SET created_at = now() - interval '1 minute' WHERE awaits_sent")
            await pool.execute("VACUUM ANALYZE callback_outbox")
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kept", type=int, default=200_000, help="delivered `sent` rows kept for receipts to find")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-bench-outbox-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        pg.start()
        try:
            dsn = pg.dsn("postgres")
            asyncio.run(migrate(dsn))
            print(f"callback outbox: {args.kept:,} kept `sent` rows, 7,000 pending receipts, 5,000 pending `sent`")
            asyncio.run(measure(dsn, args.kept))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
