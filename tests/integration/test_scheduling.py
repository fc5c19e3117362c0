"""Scheduled sends (`send_at`) and cancellation (`DELETE /v1/messages/{id}`): scheduled messages
wait in PostgreSQL, go out within a second of their time across a worker restart, and a
cancelled message is never sent nor billed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform

OTP = {"template": {"name": "otp", "language": "en"}, "params": {"code": "1234"}}


def _scheduling(settings: Settings) -> Settings:
    """Messages due more than a second ahead wait in PostgreSQL (production: thirty)."""
    worker = msgspec.structs.replace(settings.worker, schedule_park_ahead_seconds=1.0)
    return msgspec.structs.replace(settings, worker=worker)


async def _tenant(platform: Platform) -> tuple[str, dict[str, str]]:
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth, name="otp", body="Code {{code}}", category="authentication")
    return tenant_id, auth


async def _warmed(platform: Platform, auth: dict[str, str], to: str) -> str:
    """A message sent now and delivered: the worker and the projection have joined their groups
    (a scheduled message's `scheduled` status is only seen by a projection already reading)."""
    r = await platform.send(auth, to=to, **OTP)
    assert (r.status_code, r.json()["status"]) == (202, "accepted")
    await platform.wait_status(auth, r.json()["id"], {"delivered"})
    return str(r.json()["id"])


async def _parked(pool: asyncpg.Pool, n: int) -> None:
    await eventually(lambda: pool.fetchval("SELECT count(*) FROM scheduled_messages"), lambda c: c == n,
                     "messages parked in PostgreSQL", seconds=20)  # fmt: skip


def _at(message: dict[str, Any], status: str) -> datetime:
    (event,) = [e for e in message["events"] if e["status"] == status]
    return datetime.fromisoformat(event["at"])


async def test_scheduled_messages_wait_in_postgres_and_go_out_within_a_second_of_send_at_across_a_restart(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    platform = await Platform(_scheduling(settings)).start(worker=False)
    try:
        worker = platform.add_worker()
        _, auth = await _tenant(platform)
        now = await _warmed(platform, auth, "+447400007987")
        send_at = datetime.now(UTC) + timedelta(seconds=10)
        batch = [{"to": f"+447400{700 + i:05d}7", "channel": "sms", **OTP, "send_at": send_at.isoformat()}
                 for i in range(20)]  # fmt: skip
        r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": batch})
        assert (r.status_code, r.json()["accepted"]) == (202, 20), r.text
        ids = [item["id"] for item in r.json()["results"]]
        one = await platform.send(auth, to="+447400007997", send_at=send_at.isoformat(), **OTP)
        assert (one.status_code, one.json()["status"]) == (202, "scheduled")
        ids.append(one.json()["id"])
        await _parked(pool, 21)
        assert (await platform.wait_status(auth, ids[0], {"scheduled"}))["status"] == "scheduled"

        await worker.stop()  # the workers restart while the messages wait
        platform.add_worker()
        await _warmed(platform, auth, "+447400007977")  # the new worker has joined
        assert datetime.now(UTC) < send_at - timedelta(seconds=1), "the restart took too long for this test"
        for message_id in ids:
            message = await platform.wait_status(auth, message_id, {"delivered"})
            sent = _at(message, "sent")
            assert send_at <= sent < send_at + timedelta(seconds=1), (sent, send_at)
        sends = platform.sim_sends()
        assert all(sends[m] == 1 for m in [*ids, now]), sends  # each once
        assert await pool.fetchval("SELECT count(*) FROM scheduled_messages") == 0
    finally:
        await platform.stop()


async def test_a_cancelled_scheduled_message_is_never_sent_nor_billed(settings: Settings, pool: asyncpg.Pool) -> None:
    platform = await Platform(_scheduling(settings)).start()
    try:
        tenant_id, auth = await _tenant(platform)
        _, stranger = await _tenant(platform)
        warm = await _warmed(platform, auth, "+447400008097")
        later = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        kept, cancelled = [(await platform.send(auth, to=f"+447400{n:05d}7", send_at=later, **OTP)).json()["id"]
                           for n in (810, 811)]  # fmt: skip
        await _parked(pool, 2)
        assert (await platform.http.delete(f"/v1/messages/{cancelled}", headers=stranger)).status_code == 404
        r = await platform.http.delete(f"/v1/messages/{cancelled}", headers=auth)
        assert (r.status_code, r.json()) == (202, {"id": cancelled, "cancellation": "cancelled"}), r.text
        again = await platform.http.delete(f"/v1/messages/{cancelled}", headers=auth)
        assert (again.status_code, again.json().get("cancellation")) == (202, "cancelled"), again.text  # idempotent
        assert (await platform.wait_status(auth, cancelled, {"cancelled"}))["status"] == "cancelled"

        delivered = await platform.wait_status(auth, kept, {"delivered"}, deadline_s=30)
        late = await platform.http.delete(f"/v1/messages/{kept}", headers=auth)
        assert (late.status_code, late.json()["code"]) == (409, "message_not_cancellable")
        await asyncio.sleep(1.0)  # past the cancelled one's time: still not sent
        assert cancelled not in platform.sim_sends()
        assert (await platform.wait_status(auth, cancelled))["status"] == "cancelled"
        billed = await pool.fetch("SELECT message_id FROM billing_records WHERE tenant_id = $1", uuid.UUID(tenant_id))
        assert sorted(str(r["message_id"]) for r in billed) == sorted([warm, delivered["id"]])
    finally:
        await platform.stop()


async def test_a_queued_message_cancelled_before_the_worker_reaches_it_ends_cancelled_unsent(
    settings: Settings,
) -> None:
    platform = await Platform(settings).start(worker=False)
    try:
        _, auth = await _tenant(platform)
        queued = (await platform.send(auth, to="+447400008207", **OTP)).json()["id"]
        other = (await platform.send(auth, to="+447400008217", **OTP)).json()["id"]
        await platform.wait_status(auth, queued, {"accepted"})
        r = await platform.http.delete(f"/v1/messages/{queued}", headers=auth)
        assert (r.status_code, r.json()["cancellation"]) == (202, "requested"), r.text
        platform.add_worker()
        assert (await platform.wait_status(auth, queued))["status"] == "cancelled"
        assert (await platform.wait_status(auth, other))["status"] == "delivered"
        assert set(platform.sim_sends()) == {other}
    finally:
        await platform.stop()


@pytest.mark.parametrize(
    ("ahead", "code"),
    [
        (None, None),  # no offset: msgspec's tz requirement names the field
        (timedelta(days=31), "invalid_send_at"),
        (timedelta(hours=-2), "invalid_send_at"),
    ],
)
async def test_a_send_at_without_offset_in_the_past_or_past_30_days_is_refused_naming_it(
    api: Platform, ahead: timedelta | None, code: str | None
) -> None:
    send_at = "2026-12-05T10:00:00" if ahead is None else (datetime.now(UTC) + ahead).isoformat()
    _, auth = await api.tenant_with_key()
    await api.template(auth, name="otp", body="Code {{code}}", category="authentication")
    r = await api.send(auth, to="+447400008307", send_at=send_at, **OTP)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code is not None:
        assert r.json()["code"] == code
    assert "send_at" in r.text
