"""Provider receipts: signed, about the provider's own id, bound to Herald's record of the send.

The bodies follow the carrier-sim's receipt protocol (`herald_carrier_sim/app.py`), which
names only the provider's id for a send, as Twilio's status callbacks name the MessageSid.
Finding 1 of the security review (issue #29) is reproduced by
`test_the_reviewers_forged_receipt_changes_nothing` and the tests after it.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from herald import signing
from herald.db import receipts
from herald.domain.records import StatusEventV1
from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform

RECEIPTS = "/v1/providers/carrier-sim/receipts"
NO_RECEIPT = "0005"  # the carrier-sim accepts these and never sends a receipt: the tests do


def _receipt(provider_message_id: str, status: str = "delivered", at_ms: int | None = None, **extra: Any) -> bytes:
    at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    return msgspec.json.encode({"provider_message_id": provider_message_id, "status": status, "at_ms": at_ms, **extra})


async def _post(platform: Platform, body: bytes, url: str = RECEIPTS) -> Any:
    headers = {"x-provider-signature": signing.sign(platform.settings.provider.receipt_secret, body)}
    return await platform.http.post(url, content=body, headers=headers)


async def _sent(platform: Platform, auth: dict[str, str], to: str) -> tuple[str, dict[str, Any]]:
    r = await platform.send(auth, to=to)
    assert r.status_code == 202, r.text
    return r.json()["id"], await platform.wait_status(auth, r.json()["id"], {"sent"})


async def _provider_id(pool: asyncpg.Pool, message_id: str) -> str:
    found: str = await eventually(
        lambda: pool.fetchval(
            "SELECT provider_message_id FROM provider_messages WHERE message_id = $1", uuid.UUID(message_id)
        ),
        lambda v: v is not None,
        "the send is recorded",
        seconds=10,
    )
    return found


async def _outcome(pool: asyncpg.Pool, provider_message_id: str, status: str) -> str | None:
    value: str | None = await pool.fetchval(
        "SELECT coalesce(outcome, 'waiting') FROM provider_receipts WHERE provider_message_id = $1 AND status = $2",
        provider_message_id, status,
    )  # fmt: skip
    return value


async def _message(platform: Platform, auth: dict[str, str], message_id: str) -> dict[str, Any]:
    return dict((await platform.http.get(f"/v1/messages/{message_id}", headers=auth)).json())


async def _priced(platform: Platform, auth: dict[str, str], message_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: _message(platform, auth, message_id), lambda m: m.get("price") is not None, "the message is billed",
        seconds=10,
    )  # fmt: skip


async def test_unsigned_and_forged_receipts_are_refused(api: Platform, pool: asyncpg.Pool) -> None:
    body = _receipt("sim-1")
    r = await api.http.post(RECEIPTS, content=body)
    assert (r.status_code, r.json()["code"]) == (401, "invalid_signature")
    forged = signing.sign("not-the-secret", body)
    r = await api.http.post(RECEIPTS, content=body, headers={"x-provider-signature": forged})
    assert r.status_code == 401
    good = signing.sign(api.settings.provider.receipt_secret, body)
    r = await api.http.post(RECEIPTS, content=body + b" ", headers={"x-provider-signature": good})
    assert r.status_code == 401
    r = await api.http.post("/v1/providers/unknown/receipts", content=body, headers={"x-provider-signature": good})
    assert r.status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM provider_receipts") == 0


async def test_signed_receipt_with_bad_status_is_422(api: Platform) -> None:
    r = await _post(api, _receipt("sim-1", status="sent"))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_receipt")


async def test_signed_receipt_with_a_time_no_timestamp_can_hold_is_422(api: Platform) -> None:
    # Accepted, it would reach herald.events and fail every sink that converts it (year 3170843).
    for at_ms in (10**17, -1):
        r = await _post(api, _receipt("sim-1", at_ms=at_ms))
        assert (r.status_code, r.json()["code"]) == (422, "invalid_receipt"), at_ms


async def test_a_batch_of_receipts_is_all_or_nothing_and_signed(platform: Platform, pool: asyncpg.Pool) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    ids = [(await _sent(platform, auth, f"+4474001{i}{NO_RECEIPT}"))[0] for i in range(3)]
    items = [msgspec.json.decode(_receipt(await _provider_id(pool, m))) for m in ids]
    url = RECEIPTS + "/batch"

    bad = msgspec.json.encode({"receipts": [*items[:2], {**items[2], "status": "sent"}]})
    r = await _post(platform, bad, url)
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "receipts[2].status")
    unsigned = msgspec.json.encode({"receipts": items})
    assert (await platform.http.post(url, content=unsigned)).status_code == 401
    assert await pool.fetchval("SELECT count(*) FROM provider_receipts") == 0  # nothing of either was kept

    assert (await _post(platform, unsigned, url)).status_code == 202
    for message_id in ids:
        await platform.wait_status(auth, message_id, {"delivered"})


async def test_the_reviewers_forged_receipt_changes_nothing(platform: Platform, pool: asyncpg.Pool) -> None:
    """The review's request: a signed receipt naming another tenant's message and tenant id,
    dated 1970, moved that tenant's `delivered` message to `failed`. A receipt now names no
    message and no tenant: that body is refused whole, and nothing is recorded."""
    attacker_id, _ = await platform.tenant_with_key()
    _, victim = await platform.tenant_with_key()
    await platform.template(victim)
    message_id = (await platform.send(victim)).json()["id"]
    delivered = await platform.wait_status(victim, message_id, {"delivered"})
    forged = _receipt("sim-1", status="failed", at_ms=0, message_id=message_id, tenant_id=attacker_id)
    r = await _post(platform, forged)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_receipt")
    assert "message_id" in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM provider_receipts WHERE status = 'failed'") == 0
    assert (await platform.http.get(f"/v1/messages/{message_id}", headers=victim)).json() == delivered


async def test_a_receipt_binds_only_to_a_send_of_the_provider_that_signed_it(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    """A provider's id is the only handle, and only within that provider: the id of a message
    sent through another provider (here the test-key sink) or never sent binds to nothing."""
    _, live = await platform.tenant_with_key()
    _, test = await platform.tenant_with_key(kind="test")
    for auth in (live, test):
        await platform.template(auth)
    sink_message = (await platform.send(test)).json()["id"]
    await platform.wait_status(test, sink_message, {"delivered"})
    sink_id = await _provider_id(pool, sink_message)
    live_message, _ = await _sent(platform, live, f"+44740012{NO_RECEIPT}")
    live_id = await _provider_id(pool, live_message)

    for foreign in (sink_id, "sim-999999999999"):
        assert (await _post(platform, _receipt(foreign, status="failed"))).status_code == 202
    # An unknown id with the echoed message id of a message this provider never carried.
    echo = _receipt("sim-888888888888", status="failed", callback_data=sink_message)
    assert (await _post(platform, echo)).status_code == 202
    assert (await _post(platform, _receipt(live_id))).status_code == 202
    await platform.wait_status(live, live_message, {"delivered"})
    # A sweep of everything waiting (what the sinks run every receipt_sweep_seconds) binds none.
    published: list[StatusEventV1] = []

    async def publish(events: list[StatusEventV1]) -> None:
        published.extend(events)

    await receipts.bind(pool, 1000, publish)
    assert published == []
    for foreign in (sink_id, "sim-999999999999", "sim-888888888888"):
        assert await _outcome(pool, foreign, "failed") == "waiting"
    assert (await platform.http.get(f"/v1/messages/{sink_message}", headers=test)).json()["status"] == "delivered"


async def _receipt_before_its_send_is_recorded(
    platform: Platform, pool: asyncpg.Pool, to: str
) -> tuple[dict[str, str], str]:
    """On a platform started without sinks: a message sent, and the carrier-sim's receipt for
    it recorded (20 ms after the send) while Herald has no record of the send. (auth, message id)"""
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    message_id: str = (await platform.send(auth, to=to)).json()["id"]
    await eventually(lambda: pool.fetchval("SELECT count(*) FROM provider_receipts"), lambda n: n == 1,
                     "the carrier-sim's receipt is recorded", seconds=10)  # fmt: skip
    return auth, message_id


async def test_receipts_bind_at_once_whichever_comes_first_the_receipt_or_the_send(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """With the sweep an hour away, a receipt posted after its send is recorded binds when the
    API records it, and a receipt that came before its send (no sinks running) binds when the
    status sink records the send: neither waits for a scan of the receipts waiting."""
    hourly = msgspec.structs.replace(
        settings, sinks=msgspec.structs.replace(settings.sinks, receipt_sweep_seconds=3600)
    )
    platform = await Platform(hourly).start(sinks=False)
    try:
        auth, early = await _receipt_before_its_send_is_recorded(platform, pool, "+447400160007")
        assert await pool.fetchval("SELECT outcome FROM provider_receipts") is None
        platform.add_sinks()
        await platform.wait_status(auth, early, {"delivered"}, deadline_s=15)

        late, _ = await _sent(platform, auth, f"+44740016{NO_RECEIPT}")
        provider_id = await _provider_id(pool, late)
        assert (await _post(platform, _receipt(provider_id))).status_code == 202
        assert await _outcome(pool, provider_id, "delivered") == "bound"  # bound before the 202
        await platform.wait_status(auth, late, {"delivered"})
    finally:
        await platform.stop()


async def test_a_receipt_matching_no_send_is_set_aside_and_binds_if_its_send_is_recorded_later(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Receipts for ids Herald never sent leave the sweep's reach once
    `receipt_unmatched_after_seconds` has passed (a flood of them made every sweep read them
    all); one whose send is recorded later (the sinks were down) still binds."""
    platform = await Platform(settings).start(sinks=False)
    try:
        auth, message_id = await _receipt_before_its_send_is_recorded(platform, pool, "+447400170007")
        assert (await _post(platform, _receipt("sim-666666666666"))).status_code == 202  # never sent
        assert await receipts.give_up_unmatched(pool, 0) == {"carrier-sim": 2}
        assert await pool.fetchval("SELECT count(*) FROM provider_receipts WHERE outcome = 'unmatched'") == 2
        platform.add_sinks()
        await platform.wait_status(auth, message_id, {"delivered"})
        assert await _outcome(pool, "sim-666666666666", "delivered") == "unmatched"
        # A sweep neither reads nor binds it again.
        published: list[StatusEventV1] = []

        async def publish(events: list[StatusEventV1]) -> None:
            published.extend(events)

        assert (await receipts.bind(pool, 1000, publish), published) == (receipts.Bound([], []), [])
    finally:
        await platform.stop()


async def test_a_send_whose_sent_event_was_lost_is_bound_by_its_echoed_message_id(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    """A worker killed between the provider's answer and its `sent` event sends the message again:
    the first send's id is unknown to Herald. Its receipt, echoing the message id Herald attached,
    binds to that message because Herald recorded sending it through the same provider, so the
    second send is counted (`herald_duplicate_sends_total`) and the first's report is not lost."""
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    message_id, _ = await _sent(platform, auth, f"+44740015{NO_RECEIPT}")
    await _provider_id(pool, message_id)
    lost = _receipt("sim-777777777777", callback_data=message_id)  # the id of the send never recorded
    assert (await _post(platform, lost)).status_code == 202
    await eventually(lambda: _outcome(pool, "sim-777777777777", "delivered"), lambda o: o == "bound", "bound",
                     seconds=10)  # fmt: skip
    message = await platform.wait_status(auth, message_id, {"delivered"})
    assert [e["status"] for e in message["events"]] == ["accepted", "sent", "delivered"]


async def test_receipt_times_are_clamped_to_the_messages_life_and_bill_in_heralds_month(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    """A receipt dated 1970 or 2100 put `read` before `accepted` in the timeline and filed the
    bill under 1970-01 or 2100-01. Times now lie between the send and the receipt's arrival."""
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    message_id, _ = await _sent(platform, auth, f"+44740013{NO_RECEIPT}")
    provider_id = await _provider_id(pool, message_id)
    before = datetime.now(UTC)
    assert (await _post(platform, _receipt(provider_id, at_ms=4_102_444_800_000))).status_code == 202  # 2100
    assert (await _post(platform, _receipt(provider_id, status="read", at_ms=0))).status_code == 202  # 1970
    message = await platform.wait_status(auth, message_id, {"read"})
    message = await eventually(
        lambda: _message(platform, auth, message_id),
        lambda m: len(m["events"]) == 4 and m.get("price") is not None,
        "both receipts recorded and the message billed",
        seconds=10,
    )
    at = {e["status"]: datetime.fromisoformat(e["at"]) for e in message["events"]}
    assert [e["status"] for e in message["events"]][:2] == ["accepted", "sent"]
    assert all(at["sent"] <= at[s] <= datetime.now(UTC) for s in ("delivered", "read"))
    assert at["delivered"] >= before  # the 2100 receipt: when it reached Herald
    # The 1970 one: no earlier than the send, nor than the report Herald recorded before it (so
    # the first billable event to reach the ledger is the earliest, whatever the batches).
    assert at["read"] == at["delivered"]
    billed_at = datetime.fromisoformat(message["price"]["billed_at"])
    assert billed_at == min(at["delivered"], at["read"])  # the first billable event, as Herald dated it


async def test_failed_after_delivered_is_a_late_report_never_the_status(platform: Platform, pool: asyncpg.Pool) -> None:
    """The status never goes back: a `failed` reported after `delivered` (even dated before it)
    is kept apart as late; the message stays delivered and billed, and a replay changes nothing."""
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    message_id, sent = await _sent(platform, auth, f"+44740014{NO_RECEIPT}")
    provider_id = await _provider_id(pool, message_id)
    delivered_body = _receipt(provider_id)
    assert (await _post(platform, delivered_body)).status_code == 202
    await platform.wait_status(auth, message_id, {"delivered"})
    sent_ms = int(datetime.fromisoformat(sent["events"][-1]["at"]).timestamp() * 1000)
    assert (
        await _post(platform, _receipt(provider_id, status="failed", at_ms=sent_ms, error_code="x"))
    ).status_code == 202
    assert (await _post(platform, delivered_body)).status_code == 202  # a replay within the window
    await eventually(
        lambda: _outcome(pool, provider_id, "failed"), lambda o: o == "late", "the failed is judged", seconds=10
    )
    message = (await platform.http.get(f"/v1/messages/{message_id}", headers=auth)).json()
    assert message["status"] == "delivered"
    assert [e["status"] for e in message["events"]] == ["accepted", "sent", "delivered"]
    assert await pool.fetchval("SELECT count(*) FROM provider_receipts") == 2
    await _priced(platform, auth, message_id)
    assert await pool.fetchval("SELECT count(*) FROM billing_records WHERE message_id = $1", uuid.UUID(message_id)) == 1
