"""Figures read back from the database once a run's messages reached a status."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec


class Reached(msgspec.Struct, frozen=True):
    messages: int
    p50_ms: float
    p99_ms: float
    """accepted -> `status`, per message."""
    drain_per_second: float
    """From the first accept to the last message reaching `status`."""
    billed: int

    def line(self, status: str) -> str:
        return (
            f"{status} {self.messages} (billed {self.billed}): accepted->{status} p50 {self.p50_ms:.0f} ms, "
            f"p99 {self.p99_ms:.0f} ms; drain {self.drain_per_second:,.0f} msg/s (first accept to last {status})"
        )


async def reached(dsn: str, status: str, expected: int, deadline_s: float = 900) -> Reached:
    """Wait until `expected` messages are in `status`, then measure them."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + deadline_s
        while (done := await conn.fetchval("SELECT count(*) FROM messages WHERE status = $1", status)) < expected:
            assert time.monotonic() < deadline, f"only {done}/{expected} {status}"
            await asyncio.sleep(0.5)
        row = await conn.fetchrow(
            """
            SELECT count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.at - m.created_at) AS p50,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY e.at - m.created_at) AS p99,
                   extract(epoch FROM max(e.at) - min(m.created_at)) AS span
            FROM messages m JOIN message_events e ON e.message_id = m.id AND e.status = $1""",
            status,
        )
        billed = await conn.fetchval("SELECT count(*) FROM billing_records")
    finally:
        await conn.close()
    assert row is not None
    return Reached(
        messages=row["n"], p50_ms=row["p50"].total_seconds() * 1000, p99_ms=row["p99"].total_seconds() * 1000,
        drain_per_second=row["n"] / float(row["span"]), billed=billed,
    )  # fmt: skip
