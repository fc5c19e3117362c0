"""A record the database refuses is parked, the sink moves on, and `herald parked replay` applies
it once the cause is gone (real broker, Postgres and sinks; the refusal is a CHECK constraint
the test adds to `messages` for one tenant)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
from prometheus_client import REGISTRY

from herald.kafka.topics import STATUS_SINK_GROUP
from tests.integration.harness import Platform


def _herald(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERALD_DATABASE_URL": dsn, "HERALD_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "herald.cli", "parked", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _parked_metric() -> float:
    return REGISTRY.get_sample_value("herald_sink_records_parked_total", {"group": STATUS_SINK_GROUP}) or 0.0


async def test_a_refused_record_is_parked_the_sink_moves_on_and_replay_applies_it(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    refused_id, refused_auth = await platform.tenant_with_key()
    _, auth = await platform.tenant_with_key()
    await platform.template(refused_auth)
    await platform.template(auth)
    await pool.execute(f"ALTER TABLE messages ADD CONSTRAINT refuse_one CHECK (tenant_id <> '{refused_id}')")
    metric_before = _parked_metric()

    refused = [(await platform.send(refused_auth, to=f"+4474001{300 + i:05d}")).json()["id"] for i in range(3)]
    kept = [(await platform.send(auth, to=f"+4474001{400 + i:05d}")).json()["id"] for i in range(3)]
    # The other tenant's messages, in the same batches, are projected.
    for message_id in kept:
        assert (await platform.wait_status(auth, message_id, {"delivered"}))["status"] == "delivered"
    deadline = asyncio.get_running_loop().time() + 20
    while await pool.fetchval("SELECT count(*) FROM parked_records") < 3:
        assert asyncio.get_running_loop().time() < deadline, "the refused envelopes were not parked"
        await asyncio.sleep(0.1)
    parked = await pool.fetch("SELECT consumer_group, topic, error FROM parked_records")
    assert {(r["consumer_group"], r["topic"].rsplit(".", 1)[-1]) for r in parked} == {
        (STATUS_SINK_GROUP, "authentication")
    }
    assert all(r["error"].startswith("CheckViolationError") for r in parked)
    assert _parked_metric() - metric_before == 3
    for message_id in refused:
        assert (await platform.http.get(f"/v1/messages/{message_id}", headers=refused_auth)).status_code == 404

    dsn = platform.settings.database.url
    listed = await asyncio.to_thread(_herald, dsn, "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{STATUS_SINK_GROUP}\tCheckViolationError\t3\t" in listed.stdout
    # While the cause is still there, a replay applies nothing and says so.
    again = await asyncio.to_thread(_herald, dsn, "replay", "--group", STATUS_SINK_GROUP)
    assert again.returncode == 1
    assert "0 applied, 3 refused again" in again.stdout

    await pool.execute("ALTER TABLE messages DROP CONSTRAINT refuse_one")
    dry = await asyncio.to_thread(_herald, dsn, "replay", "--group", STATUS_SINK_GROUP, "--dry-run")
    assert "would replay 3 parked records" in dry.stdout
    assert await pool.fetchval("SELECT count(*) FROM parked_records") == 3
    done = await asyncio.to_thread(_herald, dsn, "replay", "--group", STATUS_SINK_GROUP)
    assert done.returncode == 0, done.stderr
    assert "3 applied, 0 refused again" in done.stdout
    assert await pool.fetchval("SELECT count(*) FROM parked_records") == 0
    # The events were projected all along; with the envelope back, each message shows its status.
    for message_id in refused:
        assert (await platform.wait_status(refused_auth, message_id, {"delivered"}))["status"] == "delivered"
