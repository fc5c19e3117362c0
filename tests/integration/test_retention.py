from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from herald.db import campaigns, tenants
from herald.db.retention import purge
from herald.domain.campaigns import CampaignSpec
from herald.domain.models import KeyKind, Tier


async def test_purge_removes_only_what_has_expired(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    tenant = uuid.uuid4()
    await pool.executemany(
        "INSERT INTO tenant_recipients (tenant_id, recipient_hash, last_sent_at) VALUES ($1, $2, $3)",
        [(tenant, b"old", now - timedelta(hours=25)), (tenant, b"new", now - timedelta(hours=1))],
    )
    await pool.executemany(
        'INSERT INTO message_claims (message_id, topic, partition, "offset", claimed_at) VALUES ($1, $2, 0, 0, $3)',
        [(uuid.uuid4(), "t", now - timedelta(days=8)), (uuid.uuid4(), "t", now - timedelta(days=2))],
    )
    await pool.executemany(
        "INSERT INTO callback_outbox (tenant_id, message_id, status, payload, dead_at) VALUES ($1, $2, 'sent', '', $3)",
        [(tenant, uuid.uuid4(), now - timedelta(days=31)), (tenant, uuid.uuid4(), None)],
    )
    await pool.executemany(
        "INSERT INTO retries_done (message_id, attempt, not_before, done_at) VALUES ($1, 1, 0, $2)",
        [(uuid.uuid4(), now - timedelta(days=9)), (uuid.uuid4(), now - timedelta(days=1))],
    )
    await pool.executemany(
        'INSERT INTO deferred_records (topic, partition, "offset", message_id, deferred_at) VALUES ($1, 0, 0, $2, $3)',
        [("old", uuid.uuid4(), now - timedelta(days=9)), ("new", uuid.uuid4(), now - timedelta(days=1))],
    )
    for age in (timedelta(days=9), timedelta(days=1)):
        message = uuid.uuid4()
        await pool.execute(
            "INSERT INTO provider_messages VALUES ('p', $1, $2, $3, $4)", f"id-{age.days}", message, tenant, now - age
        )
        await pool.execute(
            "INSERT INTO provider_receipts (provider, provider_message_id, status, received_at)"
            " VALUES ('p', $1, 'delivered', $2)",
            f"id-{age.days}", now - age,
        )  # fmt: skip
        await pool.execute("INSERT INTO receipt_finals VALUES ($1, 'delivered', $2)", message, now - age)
    hour = int(now.timestamp()) // 3600
    await pool.executemany(
        "INSERT INTO content_keys (hour, key) VALUES ($1, $2)",
        [(h, os.urandom(32)) for h in (hour - 31 * 24 - 1, hour - 30 * 24 - 1, hour - 30 * 24 + 1, hour)],
    )
    purged = await purge(pool, now, content_days=30)
    assert (purged.recipients, purged.claims, purged.dead_callbacks, purged.retries, purged.deferrals) == (1,) * 5
    assert purged.content_hours == 2
    assert purged.receipts == 3
    for table in ("provider_messages", "provider_receipts", "receipt_finals"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 1, table  # noqa: S608 - fixed names
    assert await pool.fetchval("SELECT count(*) FROM content_keys") == 2
    assert await pool.fetchval("SELECT count(*) FROM tenant_recipients") == 1
    assert await pool.fetchval("SELECT count(*) FROM message_claims") == 1
    assert await pool.fetchval("SELECT count(*) FROM callback_outbox") == 1
    again = await purge(pool, now, content_days=30)
    assert (again.recipients, again.claims, again.dead_callbacks, again.retries, again.content_hours) == (0,) * 5
    assert (again.deferrals, again.receipts) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM retries_done") == 1
    assert await pool.fetchval("SELECT topic FROM deferred_records") == "new"


async def test_purge_removes_the_rows_of_campaigns_whose_content_key_is_past_retention(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    hour = int(now.timestamp()) // 3600
    tenant = await tenants.create(pool, uuid.uuid4(), "Old Co", Tier.STANDARD, True, None, None)
    for key_hour in (hour - 30 * 24 - 1, hour):
        spec = CampaignSpec(id=uuid.uuid4(), tenant_id=tenant.id, key_kind=KeyKind.LIVE, name="c",
                            template_name="sale", template_language="en", send_at=None, ttl_seconds=None)
        campaign = await campaigns.create(pool, spec)
        await pool.execute("UPDATE campaigns SET content_key = $2 WHERE id = $1", campaign.id, key_hour)
        await pool.execute(
            "INSERT INTO campaign_rows (campaign_id, row_no, country, segments, recipient, content)"
            " VALUES ($1, 1, 'GB', 1, '\\x00', '\\x00')", campaign.id,
        )  # fmt: skip
    purged = await purge(pool, now, content_days=30)
    assert purged.campaign_rows == 1
    kept = await pool.fetchval("SELECT c.content_key FROM campaign_rows r JOIN campaigns c ON c.id = r.campaign_id")
    assert kept == hour
