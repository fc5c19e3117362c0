"""Synthetic ledger rows generated inside PostgreSQL (tests and the billing benchmark).

The rows are spread over the month, three channels, three categories, four countries and no
country (email), with varied prices, so group-bys and chunk boundaries are exercised.
"""

from __future__ import annotations

import uuid

import asyncpg

from herald.billing.period import Month

SEED_LEDGER = """
INSERT INTO billing_records (message_id, tenant_id, channel, category, country, rate_card_version,
                             unit_price_micros, currency, billed_at, period)
SELECT gen_random_uuid(), ($1::uuid[])[1 + i % cardinality($1::uuid[])],
       (ARRAY['sms', 'whatsapp', 'email'])[1 + i % 3],
       (ARRAY['authentication', 'utility', 'marketing'])[1 + (i / 3) % 3],
       CASE WHEN i % 3 = 2 THEN NULL ELSE (ARRAY['GB', 'US', 'DE', 'FR'])[1 + (i / 9) % 4] END,
       1, 1000 + (i::bigint * 7919) % 99991, 'EUR',
       $2::timestamptz + ((i::bigint * 104729) % (extract(epoch FROM $3::timestamptz - $2::timestamptz)::bigint))
                         * interval '1 second',
       ($2::timestamptz AT TIME ZONE 'UTC')::date
FROM generate_series(1, $4) AS i
"""


async def seed_ledger(conn: asyncpg.Connection, tenants: list[uuid.UUID], month: Month, rows: int) -> None:
    """`rows` ledger rows billed within `month`, spread round-robin over `tenants`."""
    await conn.execute(SEED_LEDGER, tenants, month.start, month.end, rows)
