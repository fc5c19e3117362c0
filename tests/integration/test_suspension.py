"""A suspended tenant sends nothing more, queued messages included (security review, issue #29
finding 2: only the API checked `suspended`, and eleven more messages went out after the PATCH)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from herald_cli.settings import Settings
from tests.eventually import at_least, eventually
from tests.integration.harness import Platform

CACHE_SECONDS = 0.5


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    worker = msgspec.structs.replace(settings.worker, tenant_cache_seconds=CACHE_SECONDS, suspended_recheck_seconds=1.0)
    running = await Platform(msgspec.structs.replace(settings, worker=worker)).start()
    yield running
    await running.stop()


async def test_a_suspended_tenants_queued_messages_wait_unsent_and_expire(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id, auth = await platform.tenant_with_key()
    _, other = await platform.tenant_with_key()
    for a in (auth, other):
        await platform.template(a)
    await platform.patch_tenant(tenant_id, rate_limit_per_second=2)
    ids = []
    for i in range(30):
        r = await platform.send(auth, to=f"+4474001{100 + i:05d}", ttl_seconds=6)  # no carrier-sim rule suffix
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    sent_before = time.monotonic()
    await at_least(lambda: len(platform.sim_sends()), 2, "the paced tenant's first sends", seconds=10)
    await platform.patch_tenant(tenant_id, suspended=True)
    # Within the workers' cache bound (plus a token chunk already in hand), sends stop for good.
    await asyncio.sleep(CACHE_SECONDS + 1.0)
    stopped_at = len(platform.sim_sends())
    assert stopped_at < 30
    await asyncio.sleep(3.0)
    assert len(platform.sim_sends()) == stopped_at, "a suspended tenant's queued messages were still sent"

    # Another tenant is not held up, and the suspended one's messages expire at their TTL, unsent.
    other_id = (await platform.send(other, to="+447400199999")).json()["id"]
    assert (await platform.wait_status(other, other_id, {"delivered"}))["status"] == "delivered"
    await asyncio.sleep(max(0.0, sent_before + 6 - time.monotonic()))
    # Read from the projection: the API answers a suspended tenant 403 (tenant_suspended).
    rows = await eventually(
        lambda: pool.fetch("SELECT id::text, status FROM messages WHERE tenant_id = $1", uuid.UUID(tenant_id)),
        lambda found: len(found) == 30 and all(r["status"] in ("delivered", "expired") for r in found),
        "every message of the suspended tenant final",
        seconds=20,
    )
    status = {r["id"]: r["status"] for r in rows}
    finals = [status[m] for m in ids]
    sends = platform.sim_sends()
    assert sorted(set(finals)) == ["delivered", "expired"]
    assert finals.count("delivered") == sum(1 for m in ids if sends.get(m)) == stopped_at
    assert all(count == 1 for count in sends.values())

    # Lifted: the tenant sends again.
    await platform.patch_tenant(tenant_id, suspended=False)
    await asyncio.sleep(CACHE_SECONDS * 2)
    again = await platform.send(auth, to="+447400188888")
    assert again.status_code == 202, again.text
    assert (await platform.wait_status(auth, again.json()["id"], {"delivered"}))["status"] == "delivered"
