"""A record the database refuses is parked, the sink moves on, and `herald parked replay` applies
it once the cause is gone (real broker, Postgres and sinks; the refusal is a CHECK constraint
the test adds to `messages` for one tenant)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg
from prometheus_client import REGISTRY

from herald.db import parked
from herald.domain.models import Category
from herald.domain.records import message_key
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import BILLING_SINK_GROUP, STATUS_SINK_GROUP, WORKER_GROUP, Names, class_topic
from herald.parking import run_parked_report
from herald_cli.settings import Settings
from tests.eventually import at_least, eventually
from tests.integration.harness import Platform


def _herald(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERALD_DATABASE_URL": dsn, "HERALD_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "herald_cli", "parked", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _parked_metric() -> float:
    return REGISTRY.get_sample_value("herald_sink_records_parked_total", {"group": STATUS_SINK_GROUP}) or 0.0


def _waiting_metric() -> float | None:
    return REGISTRY.get_sample_value("herald_sink_parked_records", {"group": STATUS_SINK_GROUP})


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
    await at_least(lambda: pool.fetchval("SELECT count(*) FROM parked_records"), 3, "envelopes parked", seconds=20)
    parked = await pool.fetch("SELECT consumer_group, topic, error FROM parked_records")
    assert {(r["consumer_group"], r["topic"].rsplit(".", 1)[-1]) for r in parked} == {
        (STATUS_SINK_GROUP, "authentication")
    }
    assert all(r["error"].startswith("CheckViolationError") for r in parked)
    assert _parked_metric() - metric_before == 3
    assert _waiting_metric() == 3  # recounted from the table as each is parked
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
    # The replay ran in another process; the sinks' periodic recount brings the gauge (and with
    # it the alert) back to 0.
    stop = asyncio.Event()
    reporter = asyncio.create_task(run_parked_report(pool, 0.05, stop))
    try:
        await eventually(_waiting_metric, lambda seen: seen == 0, "herald_sink_parked_records back to 0", seconds=10)
    finally:
        stop.set()
        await reporter
    # The events were projected all along; with the envelope back, each message shows its status.
    for message_id in refused:
        assert (await platform.wait_status(refused_auth, message_id, {"delivered"}))["status"] == "delivered"


async def test_discard_gives_up_parked_records_by_group_and_error_type(settings: Settings, pool: asyncpg.Pool) -> None:
    def entry(group: str, offset: int, error: str) -> parked.Parked:
        return parked.Parked(
            consumer_group=group, topic="herald.events", partition=0, offset=offset, key=None, value=b"\x00",
            timestamp_ms=0, error=error,
        )  # fmt: skip

    for record in (
        entry(BILLING_SINK_GROUP, 1, "CheckViolationError: refused"),
        entry(BILLING_SINK_GROUP, 2, "UntranslatableCharacterError: NUL"),
        entry(STATUS_SINK_GROUP, 1, "CheckViolationError: refused"),
    ):
        await parked.park(pool, record)
    dsn = settings.database.url
    dry = await asyncio.to_thread(
        _herald, dsn, "discard", "--group", BILLING_SINK_GROUP, "--error-type", "CheckViolationError", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert f"would discard 1 parked records of {BILLING_SINK_GROUP}" in dry.stdout
    assert await parked.waiting(pool) == {BILLING_SINK_GROUP: 2, STATUS_SINK_GROUP: 1}

    one = await asyncio.to_thread(
        _herald, dsn, "discard", "--group", BILLING_SINK_GROUP, "--error-type", "CheckViolationError"
    )
    assert f"discarded 1 parked records of {BILLING_SINK_GROUP}" in one.stdout
    remaining = await pool.fetch('SELECT consumer_group, "offset" FROM parked_records ORDER BY 1, 2')
    assert [(r["consumer_group"], r["offset"]) for r in remaining] == [(BILLING_SINK_GROUP, 2), (STATUS_SINK_GROUP, 1)]

    rest = await asyncio.to_thread(_herald, dsn, "discard", "--group", BILLING_SINK_GROUP)
    assert f"discarded 1 parked records of {BILLING_SINK_GROUP}" in rest.stdout
    assert await parked.waiting(pool) == {STATUS_SINK_GROUP: 1}  # another group's are not touched


async def test_a_record_the_worker_cannot_decode_is_parked_and_the_partition_moves_on(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    # What a producer of another version might write: a record of a schema this worker cannot
    # read, on the partition of a recipient sent to right after (the same record key).
    tenant_id, auth = await platform.tenant_with_key()
    await platform.template(auth)
    names = Names(platform.settings.kafka.topic_prefix)
    producer = Producer(platform.settings.kafka, names)
    await producer.start()
    try:
        bad = b'{"schema": "herald.message.v9", "id": "not for this version"}'
        key = message_key(uuid.UUID(tenant_id), "+447400100500")
        await producer.send_many([Record(class_topic(Category.AUTHENTICATION), key, bad)])
    finally:
        await producer.stop()
    behind = (await platform.send(auth, to="+447400100500")).json()["id"]
    # The partition goes on past it, for the worker and for the status sink alike.
    assert (await platform.wait_status(auth, behind, {"delivered"}))["status"] == "delivered"

    async def worker_parked() -> list[asyncpg.Record]:
        return await pool.fetch(
            "SELECT topic, value, error FROM parked_records WHERE consumer_group = $1", WORKER_GROUP
        )

    await eventually(worker_parked, lambda rows: len(rows) == 1, "the worker parks it", seconds=20)
    (row,) = await worker_parked()
    assert (bytes(row["value"]), row["topic"]) == (bad, names.topic(class_topic(Category.AUTHENTICATION)))
    assert row["error"].startswith("ValidationError")
    # The status sink reads the same topic and parks its own copy, under its own group.
    assert await pool.fetchval("SELECT count(*) FROM parked_records WHERE consumer_group = $1", STATUS_SINK_GROUP) == 1

    dsn = platform.settings.database.url
    again = await asyncio.to_thread(_herald, dsn, "replay", "--group", WORKER_GROUP)
    assert again.returncode == 1, again.stderr  # this version still cannot read it: kept
    assert "0 applied, 1 refused again" in again.stdout
    gone = await asyncio.to_thread(_herald, dsn, "discard", "--group", WORKER_GROUP)
    assert gone.returncode == 0, gone.stderr
    assert await worker_parked() == []
