"""Campaigns end to end: a file of rows in, each valid row sent once, the bad ones reported by row;
pause, resume and cancel mid-campaign; the producing API process SIGKILLed mid-campaign.

The files follow RFC 4180 (CSV) and the Apache Parquet format as pyarrow writes it."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from herald import metrics
from herald.embedded import free_port
from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform
from tests.integration.processes import env_for, spawn, stop

PROMO = {"name": "sale", "body": "Hi {{name}}, {{pct}}% off today. Reply STOP to opt out", "category": "marketing"}


def _to(n: int) -> str:
    return f"+44751{n:06d}7"


def _csv(rows: list[list[str]], header: tuple[str, ...] = ("to", "name", "pct", "reference")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def _campaign(platform: Platform, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = await platform.http.post(
        "/v1/campaigns", headers=auth, json={"name": "spring sale", "template": {"name": "sale", "language": "en"},
                                             **fields},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "draft"
    return dict(r.json())


async def _upload(platform: Platform, auth: dict[str, str], campaign: str, body: bytes,
                  media: str = "text/csv") -> dict[str, Any]:  # fmt: skip
    r = await platform.http.put(
        f"/v1/campaigns/{campaign}/recipients", headers={**auth, "content-type": media}, content=body, timeout=120
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _read(platform: Platform, auth: dict[str, str], campaign: str) -> dict[str, Any]:
    r = await platform.http.get(f"/v1/campaigns/{campaign}", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _act(platform: Platform, auth: dict[str, str], campaign: str, action: str, **body: Any) -> dict[str, Any]:
    r = await platform.http.post(f"/v1/campaigns/{campaign}/{action}", headers=auth, json=body or None)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _started(platform: Platform, rows: int, rate: int) -> tuple[str, dict[str, str], str]:
    """A tenant limited to `rate` msg/s whose campaign of `rows` rows is started (produced at
    80% of it): its id, its key's header, the campaign's id."""
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.patch_tenant(tenant_id, rate_limit_per_second=rate)
    await platform.template(auth, channel="sms", **PROMO)
    cid = (await _campaign(platform, auth))["id"]
    await _upload(platform, auth, cid, _csv([[_to(i), "Bo", "10", f"r{i}"] for i in range(1, rows + 1)]))
    await _act(platform, auth, cid, "start")
    return tenant_id, auth, cid


async def _counts(platform: Platform, auth: dict[str, str], campaign: str) -> dict[str, int]:
    return dict((await _read(platform, auth, campaign))["counts"])


async def _sends_of(pool: asyncpg.Pool, platform: Platform, campaign: str) -> dict[str, int]:
    ids = {str(r["id"]) for r in await pool.fetch("SELECT id FROM messages WHERE campaign_id = $1::uuid", campaign)}
    return {i: n for i, n in platform.sim_sends().items() if i in ids}


async def _undelivered(pool: asyncpg.Pool, platform: Platform, campaign: str) -> list[tuple[Any, ...]]:
    """Some of the campaign's messages not delivered: id, status, events, carrier sends."""
    rows = await pool.fetch(
        "SELECT m.id, m.status, array_agg(e.status) AS events FROM messages m"
        " LEFT JOIN message_events e ON e.message_id = m.id WHERE m.campaign_id = $1::uuid"
        " AND m.status <> 'delivered' GROUP BY m.id, m.status LIMIT 5", campaign,
    )  # fmt: skip
    return [(r["id"], r["status"], r["events"], platform.sim_sends().get(str(r["id"]))) for r in rows]


# 100,000 rows go through the one process this test runs the platform in (a few minutes).
@pytest.mark.timeout(600)
@pytest.mark.long
async def test_a_campaign_sends_each_good_row_once_and_reports_the_bad_ones_by_row(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # The worker in a process of its own: 100,000 messages through one event loop take twice as long.
    platform = await Platform(settings).start(worker=False)
    worker = spawn("worker", env_for(settings), Path(settings.data_dir) / "worker.log")
    try:
        await _send_a_large_campaign(platform, pool)
    finally:
        stop(worker)
        await platform.stop()


async def _send_a_large_campaign(platform: Platform, pool: asyncpg.Pool) -> None:
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.patch_tenant(tenant_id, rate_limit_per_second=5000)
    await platform.template(auth, channel="sms", **PROMO)
    n = 100_000
    rows = [[_to(i), f"Ana{i}", "20", f"r{i}"] for i in range(1, n + 1)]
    bad = {
        7: ([_to(7)[:-3], "Ana", "20", "r7"], "invalid_recipient", "to"),  # too short to be a number
        100: ([_to(100), "Ana", "20", "r" * 200], None, "reference"),  # longer than a reference may be
        1500: ([_to(1500), "Ana"], "row_malformed", None),  # fewer cells than the header
        2999: ([_to(2999), "x" * 2000, "20", "r"], None, "params.name"),  # longer than a param may be
    }
    for row, (cells, _, _) in bad.items():
        rows[row - 1] = cells
    # Suppressed after the upload: refused when its row is produced (the list is read then).
    r = await platform.http.post("/v1/suppressions", headers=auth, json={"channel": "sms", "recipient": _to(42)})
    assert r.status_code in (200, 201), r.text
    campaign = await _campaign(platform, auth)
    uploaded = await _upload(platform, auth, campaign["id"], _csv(rows))
    assert uploaded["counts"]["rows"] == n
    assert uploaded["counts"]["rejected"] == len(bad)

    estimate = (await platform.http.get(f"/v1/campaigns/{campaign['id']}/estimate", headers=auth)).json()
    assert estimate["messages"] == n - len(bad)
    assert estimate["new_recipients"] == n - len(bad)
    assert estimate["billed"] is True
    assert estimate["total_micros"] > 0

    started = await _act(platform, auth, campaign["id"], "start")
    assert started["state"] == "sending"

    async def done() -> dict[str, Any]:
        return await _read(platform, auth, campaign["id"])

    try:
        final = await eventually(
            done, lambda c: c["state"] == "completed" and c["counts"]["delivered"] == n - len(bad) - 1,
            "every good row delivered", seconds=400,
        )  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not delivered: {await _undelivered(pool, platform, campaign['id'])}") from None
    assert final["counts"]["accepted"] == n - len(bad) - 1
    assert final["counts"]["rejected"] == len(bad) + 1
    sends = await _sends_of(pool, platform, campaign["id"])
    assert len(sends) == n - len(bad) - 1, "each good row sent"
    assert set(sends.values()) == {1}, "none twice"

    r = await platform.http.get(f"/v1/campaigns/{campaign['id']}/rejections", headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    listed = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(x["row"]) for x in listed] == sorted([*bad, 42])
    by_row = {int(x["row"]): x for x in listed}
    for row, (_, code, field) in bad.items():
        if code is not None:
            assert by_row[row]["code"] == code, by_row[row]
        if field is not None:
            assert by_row[row]["field"] == field, by_row[row]
    assert by_row[42]["code"] == "recipient_suppressed"
    assert _to(42) not in r.text, "the rejections name rows, never their values"
    assert "Ana" not in r.text

    # Billed once per delivered message, at the estimate's price.
    async def billed() -> tuple[int, int]:
        row = await pool.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(b.unit_price_micros * b.quantity), 0) AS micros FROM billing_records b"
            " JOIN messages m ON m.id = b.message_id WHERE m.campaign_id = $1::uuid", campaign["id"],
        )  # fmt: skip
        assert row is not None
        return row["n"], row["micros"]

    per_message = estimate["total_micros"] // estimate["messages"]
    assert per_message * estimate["messages"] == estimate["total_micros"], "one country, one segment: one price"
    await eventually(billed, lambda b: b == (n - len(bad) - 1, per_message * (n - len(bad) - 1)),
                     "the estimate's price, once per delivered message", seconds=30)  # fmt: skip

    listed_messages = await platform.http.get("/v1/messages", headers=auth, params={"campaign": campaign["id"]})
    assert len(listed_messages.json()["items"]) == 100


def _slow(settings: Settings, latency_ms: int, in_flight: int) -> Settings:
    """A carrier that takes `latency_ms` a send and a worker with `in_flight` calls: a backlog of
    the campaign's messages builds up in the queue, for a cancellation to reach."""
    return msgspec.structs.replace(
        settings,
        carrier_sim=msgspec.structs.replace(settings.carrier_sim, latency_ms=latency_ms),
        worker=msgspec.structs.replace(settings.worker, max_in_flight=in_flight),
    )


async def test_pause_resume_and_cancel_mid_campaign_send_nothing_after_the_cancel_and_bill_none_of_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    platform = await Platform(_slow(settings, latency_ms=200, in_flight=4)).start()
    try:
        n = 3000
        tenant_id, auth, cid = await _started(platform, n, rate=100)  # produced at 80/s, sent at ~20/s
        counts = functools.partial(_counts, platform, auth, cid)

        await eventually(counts, lambda c: c["accepted"] >= 200, "some rows queued", seconds=30)
        paused = await _act(platform, auth, cid, "pause")
        assert paused["state"] == "paused"
        await asyncio.sleep(1.0)  # a chunk already on its way to the broker is recorded
        held = (await counts())["accepted"]
        await asyncio.sleep(2.0)
        assert (await counts())["accepted"] == held, "a paused campaign queues nothing"

        assert (await _act(platform, auth, cid, "resume"))["state"] == "sending"
        await eventually(counts, lambda c: c["accepted"] >= held + 200, "queuing again", seconds=30)

        cancelled = await _act(platform, auth, cid, "cancel")
        answered = time.monotonic()
        assert cancelled["state"] == "cancelled"
        sent_at_answer = await _sends_of(pool, platform, cid)
        backlog = cancelled["counts"]["queued"]
        assert backlog > 50, f"the cancellation must find queued messages to stop (found {backlog})"

        final = await eventually(counts, lambda c: c["queued"] == 0, "the queue drained by cancellation", seconds=60)
        await asyncio.sleep(1.0)
        sent = await _sends_of(pool, platform, cid)
        assert set(sent) >= set(sent_at_answer)
        assert set(sent.values()) == {1}
        assert final["cancelled"] == n - len(sent), final
        assert final["delivered"] + final["sent"] == len(sent), final
        # The carrier logs a send after its fixed 200 ms: what arrived after the answer is a send begun after it.
        arrived = [at - 0.2 for at, tenant in platform.sim_log() if tenant == tenant_id]
        assert max(arrived) < answered, f"a send arrived {max(arrived) - answered:.3f} s after the answer"

        # The cancelled messages end `cancelled`, are never billed; the sent ones are, once.
        await eventually(lambda: counts(), lambda c: c["delivered"] == len(sent), "receipts in", seconds=30)
        rows = await pool.fetch(
            "SELECT m.status, count(b.message_id) AS billed FROM messages m"
            " LEFT JOIN billing_records b ON b.message_id = m.id WHERE m.campaign_id = $1::uuid GROUP BY m.status",
            cid,
        )  # fmt: skip
        billed = {r["status"]: r["billed"] for r in rows}
        assert billed.get("cancelled", 0) == 0, billed
        assert billed["delivered"] == len(sent), billed
        events = await pool.fetchval(
            "SELECT count(*) FROM message_events e JOIN messages m ON m.id = e.message_id"
            " WHERE m.campaign_id = $1::uuid AND e.status = 'cancelled'", cid,
        )  # fmt: skip
        assert events == final["cancelled"] - (n - final["accepted"]), "one `cancelled` event per queued message"
    finally:
        await platform.stop()


async def test_the_producing_api_and_a_worker_each_sigkilled_mid_campaign_lose_no_row_and_send_none_twice(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # The in-process API produces no campaign and no worker runs in-process: spawned ones do, and
    # one of each is killed mid-campaign (the API first, then the worker).
    quiet = msgspec.structs.replace(settings, campaigns=msgspec.structs.replace(settings.campaigns, max_concurrent=0))
    platform = await Platform(quiet).start(worker=False)
    duplicates_before = metrics.DUPLICATE_SENDS._value.get()
    port = free_port()
    api_env = env_for(settings, HERALD_API_PORT=str(port), HERALD_DATA_DIR=str(settings.data_dir),
                      HERALD_ADMIN_TOKEN=settings.api.admin_token, HERALD_CAMPAIGNS_LEASE_SECONDS="2",
                      HERALD_CAMPAIGNS_POLL_SECONDS="0.2")  # fmt: skip
    worker_env = env_for(settings, HERALD_WORKER_BATCH_MAX_RECORDS="200", HERALD_WORKER_MAX_IN_FLIGHT="50",
                         HERALD_WORKER_BUFFER_PER_CLASS="100")  # fmt: skip
    log = Path(settings.data_dir) / "processes.log"
    spawned = [spawn("worker", worker_env, log), spawn("api", api_env, log)]
    try:
        n = 3000
        _, auth, cid = await _started(platform, n, rate=250)  # produced at 200/s
        counts = functools.partial(_counts, platform, auth, cid)

        at_kill = await eventually(counts, lambda c: c["accepted"] >= 600, "queuing under the first API", seconds=60)
        spawned[1].send_signal(signal.SIGKILL)
        spawned[1].wait()
        assert at_kill["accepted"] < n, "the kill came too late to prove anything"
        # Its lease lapses; another API process resumes from the last recorded row.
        spawned.append(spawn("api", api_env, log))
        at_kill = await eventually(counts, lambda c: c["delivered"] >= 1500, "delivering under the first worker",
                                   seconds=60)  # fmt: skip
        spawned[0].send_signal(signal.SIGKILL)
        spawned[0].wait()
        assert at_kill["delivered"] < n, "the kill came too late to prove anything"
        spawned.append(spawn("worker", worker_env, log))
        final = await eventually(
            counts, lambda c: c["delivered"] == n, "every row delivered after the kills", seconds=120
        )
        assert final["accepted"] == n, final
        assert final["rejected"] == 0, final
        assert (await _read(platform, auth, cid))["state"] == "completed"
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE campaign_id = $1::uuid", cid) == n
        sends = await _sends_of(pool, platform, cid)
        assert len(sends) == n, "every row sent"
        # The producer's kill re-produces nothing twice (a row is one message id). A worker killed
        # with sends in flight cannot know whether the carrier took them: it sends them again, and
        # each such re-send is counted (herald_duplicate_sends_total) and bounded by its window.
        again = sum(count - 1 for count in sends.values())
        assert again <= 50 + 300, again
        counted = await eventually(lambda: metrics.DUPLICATE_SENDS._value.get() - duplicates_before,
                                   lambda seen: seen >= again, "re-sends counted", seconds=10)  # fmt: skip
        assert counted == again
    finally:
        for process in spawned:
            if process.poll() is None:
                process.kill()
                process.wait()
        await platform.stop()


async def test_a_running_campaign_leaves_room_for_the_same_tenants_otps(platform: Platform, pool: asyncpg.Pool) -> None:
    _, auth, cid = await _started(platform, 1000, rate=50)  # the campaign is produced at 40/s
    await platform.template(auth)  # the OTP template
    counts = functools.partial(_counts, platform, auth, cid)

    await eventually(counts, lambda c: c["delivered"] >= 100, "the campaign under way", seconds=30)
    otps = []
    for i in range(20):
        r = await platform.send(auth, to=f"+44780{900_000 + i:06d}7")
        assert r.status_code == 202, r.text
        otps.append(r.json()["id"])
        await asyncio.sleep(0.1)
    running = await _read(platform, auth, cid)
    assert running["state"] == "sending", "the OTPs went while the campaign was sending"
    rows = await eventually(
        lambda: pool.fetch(
            "SELECT m.id, min(e.at) FILTER (WHERE e.status = 'sent') - m.created_at AS waited FROM messages m"
            " JOIN message_events e ON e.message_id = m.id WHERE m.id = ANY($1::uuid[]) GROUP BY m.id", otps,
        ),
        lambda found: len(found) == len(otps) and all(r["waited"] is not None for r in found),
        "every OTP sent", seconds=30,
    )  # fmt: skip
    slowest = max(r["waited"].total_seconds() for r in rows)
    assert slowest < 1.0, f"an OTP waited {slowest:.2f} s behind the campaign"

    # The tenant's messages filtered to the campaign (still growing): its own, none of the OTPs.
    query = "SELECT count(*) FROM messages WHERE campaign_id = $1::uuid"
    before = await pool.fetchval(query, cid)
    listed = (await platform.http.get("/v1/messages", headers=auth, params={"campaign": cid, "limit": "1000"})).json()
    after = await pool.fetchval(query, cid)
    ids = {item["id"] for item in listed["items"]}
    assert ids.isdisjoint(otps)
    assert {item["template"]["name"] for item in listed["items"]} == {"sale"}
    assert before <= len(ids) <= after


async def test_rows_produced_again_after_the_producer_died_before_recording_them_are_sent_once(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    # The SIGKILL test's kill lands wherever it lands; this puts the campaign exactly where a
    # producer killed after the broker took its rows, and before it recorded them, leaves it.
    n = 300
    _, auth, cid = await _started(platform, n, rate=1000)
    counts = functools.partial(_counts, platform, auth, cid)
    await eventually(counts, lambda c: c["delivered"] == n, "the campaign delivered", seconds=60)
    repeats_before = metrics.IDEMPOTENT_REPEATS._value.get()
    await pool.execute(
        "UPDATE campaigns SET state = 'sending', next_row = 1, accepted = 0, finished_at = NULL, lease_owner = NULL,"
        " lease_until = NULL WHERE id = $1::uuid", cid,
    )  # fmt: skip
    await eventually(counts, lambda c: c["accepted"] == n, "every row produced again", seconds=30)
    await eventually(lambda: metrics.IDEMPOTENT_REPEATS._value.get() - repeats_before, lambda seen: seen >= n,
                     "the worker read every repeated record", seconds=30)  # fmt: skip
    sends = await _sends_of(pool, platform, cid)
    assert len(sends) == n, "the same rows are the same messages"
    assert set(sends.values()) == {1}, "none sent twice"
    assert (await _read(platform, auth, cid))["state"] == "completed"
