"""Month-close benchmark (issue #30): close a month of --rows ledger rows and produce its invoices.

Seeds --tenants tenants with billing profiles and --rows usage rows in one month (prices from a
small set, as rate cards give: a few dozen lines per invoice), then measures, on the same
database in the same run:

1. the close (`db.closes.close`: the lock, the order checks, the totals it records), against
   ceiling: one bare `GROUP BY tenant, currency` over the month (the close reads the month once);
2. every invoice's figures (`db.invoices.month`: one snapshot, one pass over the month, the
   entries and profiles, then the lines, VAT and rounding in Python), against ceiling: one bare
   `GROUP BY` over the month into invoice lines;
3. rendering every invoice as PDF (`billing.pdf.render`), per invoice.

    .venv/bin/python -m loadtests.close [--rows 10000000] [--tenants 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from herald.billing.invoices import Party
from herald.billing.pdf import render
from herald.billing.period import Month
from herald.billing.tax import eu_rates
from herald.db import closes, invoices
from herald.db.migrate import migrate
from herald.embedded import free_port
from herald.embedded.postgres import EmbeddedPostgres

MONTH = Month.parse("2026-10")
SELLER = Party(legal_name="Herald Messaging Ltd", country="IE", vat_id="IE0000000HA", address="Dublin")
SEED_ROWS = """
INSERT INTO billing_records (message_id, tenant_id, channel, category, country, rate_card_version,
                             unit_price_micros, currency, billed_at, period)
SELECT gen_random_uuid(), ($1::uuid[])[1 + i % cardinality($1::uuid[])],
       (ARRAY['sms', 'whatsapp', 'email'])[1 + i % 3],
       (ARRAY['authentication', 'utility', 'marketing'])[1 + (i / 3) % 3],
       CASE WHEN i % 3 = 2 THEN NULL ELSE (ARRAY['GB', 'US', 'DE', 'FR', 'NA'])[1 + (i / 9) % 5] END,
       1 + (i / 7) % 2, (ARRAY[3500, 8000, 35000, 41500, 52000, 61000])[1 + (i / 11) % 6], 'EUR',
       $2::timestamptz + (i % 2592000) * interval '1 second', $3::date
FROM generate_series($4::bigint, $5::bigint) AS i
"""
COUNTRIES = ["FR", "DE", "IE", "US", "ES", "GB", "IT", "NL"]
GROUP_BY_TENANT = """
SELECT tenant_id, currency, count(*), sum(unit_price_micros) FROM billing_records WHERE period = $1
GROUP BY tenant_id, currency
"""
GROUP_BY_LINE = """
SELECT tenant_id, currency, kind, channel, category, country, rate_card_version, unit_price_micros, count(*)
FROM billing_records WHERE period = $1
GROUP BY tenant_id, currency, kind, channel, category, country, rate_card_version, unit_price_micros
"""


async def seed(dsn: str, rows: int, tenants: int) -> list[uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = [uuid.uuid4() for _ in range(tenants)]
        await conn.executemany("INSERT INTO tenants (id, name, tier) VALUES ($1, $2, 'enterprise')",
                               [(t, f"Tenant {n}") for n, t in enumerate(ids)])  # fmt: skip
        await conn.executemany(
            "INSERT INTO billing_customers (tenant_id, legal_name, external_customer_id, currency, country, vat_id)"
            " VALUES ($1, $2, $3, 'EUR', $4, $5)",
            [(t, f"Customer {n} Ltd", f"CUST-{n:05d}", COUNTRIES[n % len(COUNTRIES)],
              f"DE{n:09d}" if n % 2 else None) for n, t in enumerate(ids)],
        )  # fmt: skip
        started = time.monotonic()
        step = 1_000_000
        for first in range(1, rows + 1, step):
            await conn.execute(SEED_ROWS, ids, MONTH.start, MONTH.start.date(), first, min(first + step - 1, rows))
            print(f"  seeded {min(first + step - 1, rows):,} rows ({time.monotonic() - started:.0f} s)", flush=True)
        await conn.execute("VACUUM ANALYZE billing_records")
        return ids
    finally:
        await conn.close()


async def timed_query(dsn: str, sql: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.fetch(sql, MONTH.start.date())
        return time.perf_counter() - started
    finally:
        await conn.close()


async def measure(dsn: str) -> None:
    ceiling_close = await timed_query(dsn, GROUP_BY_TENANT)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, command_timeout=3600)
    try:
        started = time.perf_counter()
        done = await closes.close(pool, MONTH, "bench", datetime.now(UTC))
        close_s = time.perf_counter() - started
        print(f"close: {close_s:.2f} s for {sum(int(str(t['rows'])) for t in done.totals):,} rows "
              f"({len(done.totals):,} tenant totals); ceiling (one GROUP BY tenant over the month) "
              f"{ceiling_close:.2f} s; ratio {ceiling_close / close_s:.2f}")  # fmt: skip

        ceiling_lines = await timed_query(dsn, GROUP_BY_LINE)
        rates = eu_rates()
        started = time.perf_counter()
        found = await invoices.month(pool, MONTH, SELLER, rates)
        figures_s = time.perf_counter() - started
        lines = sum(len(i.lines) for i in found)
        print(f"invoice figures: {len(found):,} invoices ({lines:,} lines) in {figures_s:.2f} s; ceiling (one "
              f"GROUP BY into lines over the month) {ceiling_lines:.2f} s; "
              f"ratio {ceiling_lines / figures_s:.2f}")  # fmt: skip
        started = time.perf_counter()
        size = sum(len(render(i)) for i in found)
        pdf_s = time.perf_counter() - started
        print(f"PDF: {len(found):,} invoices rendered in {pdf_s:.2f} s ({pdf_s / len(found) * 1000:.1f} ms each, "
              f"{size / len(found) / 1024:.1f} KiB each)")  # fmt: skip
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-bench-close-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        pg.start()
        try:
            pg.psql("postgres", "CREATE DATABASE bench_close")
            dsn = pg.dsn("bench_close")
            asyncio.run(migrate(dsn))
            print(f"seeding {args.rows:,} ledger rows of {MONTH.label} over {args.tenants:,} tenants")
            asyncio.run(seed(dsn, args.rows, args.tenants))
            asyncio.run(measure(dsn))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
