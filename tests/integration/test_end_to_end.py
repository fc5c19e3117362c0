"""Admin -> template -> send -> delivered, through the real broker, worker, sink and carrier-sim."""

from __future__ import annotations

import asyncio

import msgspec

from herald import metrics
from herald_cli.settings import Settings
from tests.integration.harness import Platform, read_records


async def test_message_is_delivered_and_timeline_is_recorded(platform: Platform) -> None:
    from herald import metrics

    final = metrics.ACCEPTED_TO_FINAL_SECONDS.labels("authentication", "delivered")
    observed_before = sum(b.get() for b in final._buckets)
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)

    accepted = await platform.send(auth, reference="booking-42")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"

    message = await platform.wait_history(auth, accepted.json()["id"], ["accepted", "sent", "delivered"])
    assert message["status"] == "delivered"
    assert message["template"] == {"name": "otp", "language": "en", "version": 1}
    assert message["reference"] == "booking-42"
    assert message["category"] == "authentication"
    # The projection observed the accepted -> delivered latency for the class.
    assert sum(b.get() for b in final._buckets) == observed_before + 1


async def test_permanent_provider_error_fails_with_reason(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    # carrier-sim answers 400 invalid_number for recipients ending in 0000
    accepted = await platform.send(auth, to="+447400120000")
    message = await platform.wait_status(auth, accepted.json()["id"])
    assert message["status"] == "failed"
    assert message["events"][-1] == {**message["events"][-1], "status": "failed", "detail": "invalid_number"}


async def test_failed_receipt_after_sent_ends_failed(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    accepted = await platform.send(auth, to="+447400120002")
    message = await platform.wait_history(auth, accepted.json()["id"], ["accepted", "sent", "failed"])
    assert message["status"] == "failed"


async def test_test_key_runs_pipeline_through_the_sink_provider(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key(kind="test")
    await platform.template(auth)
    # Even a number the carrier would reject is "delivered": test keys never reach the carrier.
    accepted = await platform.send(auth, to="+447400120000")
    message = await platform.wait_status(auth, accepted.json()["id"])
    assert message["status"] == "delivered"


async def test_message_past_its_ttl_expires_unsent(settings: Settings) -> None:
    platform = await Platform(settings).start(worker=False)
    try:
        _, auth = await platform.tenant_with_key()
        await platform.template(auth)
        accepted = await platform.send(auth, ttl_seconds=1)
        assert accepted.status_code == 202
        await asyncio.sleep(1.2)  # the TTL elapses while no worker runs
        platform.add_worker()
        message = await platform.wait_status(auth, accepted.json()["id"])
        assert message["status"] == "expired"
        assert [e["status"] for e in message["events"]] == ["accepted", "expired"]
        assert message["events"][-1]["detail"] == "ttl_elapsed"
    finally:
        await platform.stop()


async def test_lost_receipt_ends_failed_by_the_deadline_sweep(settings: Settings) -> None:
    # Two sinks processes, as deploy/k8s runs them, each sweeping every 0.3 s: a lost receipt's
    # `failed` is still emitted (and counted) once.
    sinks = msgspec.structs.replace(settings.sinks, receipt_timeout_seconds=1.0, sweep_interval_seconds=0.3)
    platform = await Platform(msgspec.structs.replace(settings, sinks=sinks)).start()
    platform.add_sinks()
    timeouts_before = metrics.RECEIPT_TIMEOUTS._value.get()
    try:
        _, auth = await platform.tenant_with_key()
        await platform.template(auth)
        # carrier-sim: accepted, never a receipt
        lost = [await platform.send(auth, to=f"+447400{i}0005") for i in range(10, 16)]
        normal = await platform.send(auth, to="+447400120006")
        for r in lost:
            message = await platform.wait_status(auth, r.json()["id"], {"failed"})
            assert [e["status"] for e in message["events"]] == ["accepted", "sent", "failed"]
            assert message["events"][-1]["detail"] == "receipt_timeout"
        # A message whose receipt came in time is untouched by the sweep.
        await asyncio.sleep(1.5)
        assert (await platform.wait_status(auth, normal.json()["id"]))["status"] == "delivered"
        assert metrics.RECEIPT_TIMEOUTS._value.get() - timeouts_before == len(lost)
    finally:
        await platform.stop()


async def test_failed_message_is_copied_to_the_dead_letter_topic(platform: Platform) -> None:
    from herald.domain.records import DeadLetterV2
    from herald.kafka.topics import DLQ

    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    failed = await platform.send(auth, to="+447400120001", reference="r-1")  # carrier-sim: opted out
    delivered = await platform.send(auth, to="+447400120007")
    await platform.wait_status(auth, failed.json()["id"], {"failed"})
    await platform.wait_status(auth, delivered.json()["id"], {"delivered"})
    records = await read_records(platform.settings, [DLQ])
    letters = [msgspec.json.decode(value, type=DeadLetterV2) for _, value in records]
    assert [(str(x.message.id), x.reason, x.kind) for x in letters] == [(failed.json()["id"], "opted_out", "permanent")]
    assert letters[0].message.reference == "r-1"
    # The recipient and body are on the topic sealed only, in the key as in the value.
    key, value = records[0]
    assert b"+447400120001" not in value
    assert b"7400120001" not in key
    assert b"Your code" not in value
