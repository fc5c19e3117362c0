"""The worker's per-tenant lookups, many keys in one statement (`herald.batching`): each key its
own answer, in the order asked, a key asked twice answered twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from herald.db import schedule, suppressions, tenants
from herald.domain.models import Channel

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


async def _tenant(pool: asyncpg.Pool) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await pool.execute("INSERT INTO tenants (id, name, tier) VALUES ($1, 'Changes', 'enterprise')", tenant_id)
    return tenant_id


async def test_each_tenants_latest_cancellation_in_the_order_asked(pool: asyncpg.Pool) -> None:
    cancelled, never = await _tenant(pool), await _tenant(pool)
    for minutes in (5, 30, 10):
        await pool.execute(
            "INSERT INTO message_cancellations (message_id, tenant_id, requested_at) VALUES ($1, $2, $3)",
            uuid.uuid4(), cancelled, T0 + timedelta(minutes=minutes),
        )  # fmt: skip
    latest = T0 + timedelta(minutes=30)
    asked = [never, cancelled, never, cancelled]
    assert await schedule.latest_cancellations(pool, asked) == [None, latest, None, latest]
    assert await schedule.latest_cancellations(pool, []) == []


async def test_each_tenant_and_channels_latest_suppression_in_the_order_asked(pool: asyncpg.Pool) -> None:
    one, other = await _tenant(pool), await _tenant(pool)
    for tenant_id, channel, minutes in ((one, "sms", 5), (one, "sms", 20), (one, "email", 7), (other, "whatsapp", 1)):
        await pool.execute(
            "INSERT INTO suppressions (tenant_id, channel, recipient_hash, hint, reason, created_at)"
            " VALUES ($1, $2, $3, '…1234', 'opted_out', $4)",
            tenant_id, channel, uuid.uuid4().bytes, T0 + timedelta(minutes=minutes),
        )  # fmt: skip
    keys = [(one, Channel.SMS), (other, Channel.SMS), (one, Channel.EMAIL), (other, Channel.WHATSAPP),
            (one, Channel.SMS)]  # fmt: skip
    at = [T0 + timedelta(minutes=m) for m in (20, 7, 1)]
    assert await suppressions.latest(pool, keys) == [at[0], None, at[1], at[2], at[0]]


async def test_each_tenant_in_the_order_asked_and_none_for_one_that_is_not_there(pool: asyncpg.Pool) -> None:
    one, other, missing = await _tenant(pool), await _tenant(pool), uuid.uuid4()
    await pool.execute("UPDATE tenants SET suspended = true WHERE id = $1", other)
    found = await tenants.get_many(pool, [other, missing, one, other])
    assert [None if t is None else (t.id, t.suspended) for t in found] == [
        (other, True),
        None,
        (one, False),
        (other, True),
    ]


async def test_each_tenants_callback_configuration_in_the_order_asked(pool: asyncpg.Pool) -> None:
    configured, unset, missing = await _tenant(pool), await _tenant(pool), uuid.uuid4()
    await pool.execute(
        "UPDATE tenants SET callback_url = $2, callback_secret = 's3cret' WHERE id = $1",
        configured,
        "https://hooks.example.com/herald",
    )
    config = tenants.CallbackConfig(url="https://hooks.example.com/herald", secret="s3cret")
    asked = [unset, configured, missing, configured]
    assert await tenants.callback_configs(pool, asked) == [None, config, None, config]
    assert await tenants.callback_config(pool, configured) == config
