"""The billing ledger: one row per billable message, exactly once, priced by the card in force."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald import metrics
from herald.billing.period import Month
from herald.billing.ratecards import Price, default_card
from herald.db import billing
from herald.domain.models import Category, Channel, KeyKind, Tier
from herald.domain.records import ENCODER, OutboundMessage, StatusEventV1
from herald.domain.status import Status
from herald.kafka.producer import Record
from herald.kafka.topics import EVENTS, class_topic
from herald.sealing import seal
from herald_cli.settings import Settings
from herald_sinks.main import run_sinks
from tests.eventually import eventually
from tests.integration.harness import Loop, Platform, ledger, produce, wait_ledger_rows, wait_status_count
from tests.integration.processes import env_for, spawn, stop


def _price(channel: str, category: str, country: str) -> int:
    prices = {(p.channel.value, p.category.value, p.country): p.unit_price_micros for p in default_card().prices}
    return prices.get((channel, category, country)) or prices[(channel, category, "*")]


async def test_paid_live_messages_are_billed_once_free_and_test_keys_never(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    written_before = metrics.BILLING_RECORDS.labels("written")._value.get()
    paid_id, paid = await platform.tenant_with_key(tier="standard")
    _, free = await platform.tenant_with_key(tier="free")
    _, test_key = await platform.tenant_with_key(kind="test", tier="enterprise")
    for auth in (paid, free, test_key):
        await platform.template(auth)
    # WhatsApp goes through the tenant's own account, its template approved by Meta (the double).
    await platform.whatsapp_account(paid)
    await platform.whatsapp_template(paid, name="promo", body="Sale {{pct}}", category="marketing", language="en")

    billed = [
        (await platform.send(paid, to="+447400123456")).json()["id"],  # GB sms authentication
        (await platform.send(paid, to="+14155550123")).json()["id"],  # US sms authentication
        (
            await platform.send(
                paid, to="+33612345678", channel="whatsapp", template={"name": "promo", "language": "en"},
                params={"pct": "20"},
            )
        ).json()["id"],
    ]  # fmt: skip
    failed = (await platform.send(paid, to="+447400120000")).json()["id"]  # carrier: invalid_number
    unbilled = [(await platform.send(auth)).json()["id"] for auth in (free, test_key)]
    for message_id in billed:
        await platform.wait_status(paid, message_id, {"delivered", "read"})  # whatsapp: read soon after
    await platform.wait_status(paid, failed, {"failed"})
    for message_id, auth in zip(unbilled, (free, test_key), strict=True):
        await platform.wait_status(auth, message_id, {"delivered"})

    rows = await wait_ledger_rows(pool, 3)
    await asyncio.sleep(0.5)  # anything else would have been written by now
    rows = await ledger(pool)
    assert sorted(str(r["message_id"]) for r in rows) == sorted(billed)
    by_id = {str(r["message_id"]): r for r in rows}
    expected = [
        ("sms", "authentication", "GB"),
        ("sms", "authentication", "US"),
        ("whatsapp", "marketing", "FR"),
    ]
    for message_id, (channel, category, country) in zip(billed, expected, strict=True):
        row = by_id[message_id]
        assert str(row["tenant_id"]) == paid_id
        assert (row["channel"], row["category"], row["country"]) == (channel, category, country)
        assert row["unit_price_micros"] == _price(channel, category, country)
        assert (row["rate_card_version"], row["currency"]) == (1, "EUR")
        # Billed at the delivery receipt's time, which the message timeline shows.
        message = (await platform.http.get(f"/v1/messages/{message_id}", headers=paid)).json()
        delivered_at = next(e["at"] for e in message["events"] if e["status"] == "delivered")
        assert row["billed_at"] == datetime.fromisoformat(delivered_at)
        assert message["price"] == {
            "unit_price_micros": row["unit_price_micros"], "currency": "EUR", "rate_card_version": 1,
            "billed_at": delivered_at, "quantity": 1, "amount_micros": row["unit_price_micros"],
        }  # fmt: skip
    failed_view = (await platform.http.get(f"/v1/messages/{failed}", headers=paid)).json()
    assert "price" not in failed_view
    assert metrics.BILLING_RECORDS.labels("written")._value.get() == written_before + 3


# --- replay and crash, with events produced directly ----------------------------------------------


def _message(tenant_id: uuid.UUID, index: int, at_ms: int, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "key_kind": KeyKind.LIVE,
        "channel": Channel.SMS,
        "category": Category.UTILITY,
        "template_name": "t",
        "template_language": "en",
        "template_version": 1,
        "to": f"+4474{index:08d}",
        "country": "GB",
        "body": "b",
        "created_at_ms": at_ms,
        "expires_at_ms": at_ms + 3_600_000,
        "tier": Tier.ENTERPRISE,
        **fields,
    }
    return OutboundMessage(**values)


def _delivered(message: OutboundMessage, at_ms: int) -> list[StatusEventV1]:
    return [
        StatusEventV1(message_id=message.id, tenant_id=message.tenant_id, status=Status.SENT, at_ms=at_ms),
        StatusEventV1(message_id=message.id, tenant_id=message.tenant_id, status=Status.DELIVERED, at_ms=at_ms + 1),
    ]


async def _produce(settings: Settings, messages: list[OutboundMessage], events: list[StatusEventV1]) -> None:
    any_key = AESGCM(bytes(32))  # the sinks read envelopes only: any key seals the content here
    await produce(
        settings,
        [Record(class_topic(m.category), m.id.bytes, ENCODER.encode(seal(any_key, 0, m))) for m in messages]
        + [Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events],
    )


async def _tenant(pool: asyncpg.Pool) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await pool.execute("INSERT INTO tenants (id, name, tier) VALUES ($1, 'Billed', 'enterprise')", tenant_id)
    return tenant_id


async def test_replayed_events_and_a_second_sink_leave_the_ledger_unchanged(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant_id = await _tenant(pool)
    now_ms = int(time.time() * 1000)
    messages = [_message(tenant_id, i, now_ms) for i in range(300)]
    events = [e for m in messages for e in _delivered(m, now_ms + 100)]
    # Events before their message rows: the billing sink must park them, not drop them.
    await _produce(settings, [], events)
    sinks = Loop(settings, run_sinks)
    try:
        await asyncio.sleep(1.0)
        await _produce(settings, messages, [])
        first = await wait_ledger_rows(pool, 300)
        # The same events again (a producer retry, a replayed topic), and a second sink process
        # competing for the partitions.
        second_sinks = Loop(settings, run_sinks)
        await _produce(settings, messages, events)
        await _produce(settings, [], events)
        await asyncio.sleep(3.0)
        await second_sinks.stop()
    finally:
        await sinks.stop()
    assert await ledger(pool) == first
    assert {r["message_id"] for r in first} == {m.id for m in messages}
    assert await pool.fetchval("SELECT count(*) FROM billing_pending") == 0


async def test_rate_card_change_mid_month_prices_by_the_version_in_force(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant_id = await _tenant(pool)
    now = datetime.now(UTC)
    effective = now + timedelta(seconds=60)
    new_card = msgspec.structs.replace(
        default_card(),
        effective_from=effective,
        note="price rise",
        prices=[
            msgspec.structs.replace(p, unit_price_micros=p.unit_price_micros * 2) if p.channel is Channel.SMS else p
            for p in default_card().prices
        ]
        + [Price(Channel.SMS, Category.UTILITY, "IE", 51_000)],
    )
    async with pool.acquire() as conn:
        version = await billing.import_rate_card(conn, new_card)
    assert version == 2
    before_ms = int((effective - timedelta(seconds=30)).timestamp() * 1000)
    after_ms = int((effective + timedelta(seconds=30)).timestamp() * 1000)
    old = [_message(tenant_id, i, before_ms) for i in range(5)]
    new = [_message(tenant_id, 100 + i, after_ms) for i in range(5)]
    irish = _message(tenant_id, 200, after_ms, country="IE", to="+353851234567")
    events = [e for m in old for e in _delivered(m, before_ms)] + [
        e for m in [*new, irish] for e in _delivered(m, after_ms)
    ]
    await _produce(settings, [*old, *new, irish], events)
    sinks = Loop(settings, run_sinks)
    try:
        rows = await wait_ledger_rows(pool, 11)
    finally:
        await sinks.stop()
    by_id = {r["message_id"]: r for r in rows}
    gb_utility = _price("sms", "utility", "GB")
    assert {(by_id[m.id]["rate_card_version"], by_id[m.id]["unit_price_micros"]) for m in old} == {(1, gb_utility)}
    assert {(by_id[m.id]["rate_card_version"], by_id[m.id]["unit_price_micros"]) for m in new} == {(2, 2 * gb_utility)}
    assert (by_id[irish.id]["rate_card_version"], by_id[irish.id]["unit_price_micros"]) == (2, 51_000)


def _event(m: OutboundMessage, status: Status, at_ms: int, reason: str | None = None) -> StatusEventV1:
    return StatusEventV1(message_id=m.id, tenant_id=m.tenant_id, status=status, at_ms=at_ms, reason=reason)


async def test_billable_rule_and_reconciliation_catch_every_kind_of_difference(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant_id = await _tenant(pool)
    now_ms = int(time.time() * 1000)
    sms = _message(tenant_id, 1, now_ms)
    read_only = _message(tenant_id, 2, now_ms, channel=Channel.WHATSAPP)  # delivered receipt lost, read arrived
    email = _message(tenant_id, 3, now_ms, channel=Channel.EMAIL, country=None, to="a@example.com")
    failed = _message(tenant_id, 4, now_ms)
    expired = _message(tenant_id, 5, now_ms)
    free = _message(tenant_id, 6, now_ms, tier=Tier.FREE)
    test_key = _message(tenant_id, 7, now_ms, key_kind=KeyKind.TEST)
    timed_out = _message(tenant_id, 8, now_ms)  # failed by the receipt sweep, then a late receipt
    events = [
        *_delivered(sms, now_ms),
        _event(read_only, Status.SENT, now_ms), _event(read_only, Status.READ, now_ms + 5),
        _event(email, Status.SENT, now_ms),
        _event(failed, Status.FAILED, now_ms, "invalid_number"),
        _event(expired, Status.EXPIRED, now_ms),
        *_delivered(free, now_ms), *_delivered(test_key, now_ms),
        _event(timed_out, Status.SENT, now_ms), _event(timed_out, Status.FAILED, now_ms + 10, "receipt_timeout"),
    ]  # fmt: skip
    messages = [sms, read_only, email, failed, expired, free, test_key, timed_out]
    await _produce(settings, messages, events)
    sinks = Loop(settings, run_sinks)
    try:
        rows = await wait_ledger_rows(pool, 3)
        # The late receipt comes after the sweep's `failed` has been projected.
        await asyncio.sleep(1.0)
        await _produce(settings, [], [_event(timed_out, Status.DELIVERED, now_ms + 20)])
        await asyncio.sleep(2.0)
    finally:
        await sinks.stop()
    rows = await ledger(pool)
    assert {r["message_id"] for r in rows} == {sms.id, read_only.id, email.id}
    email_row = next(r for r in rows if r["message_id"] == email.id)
    assert (email_row["country"], email_row["unit_price_micros"]) == (None, _price("email", "utility", "*"))

    month = billing_month(now_ms)
    clean = await billing.reconcile(pool, month)
    assert (clean.ledger_rows, clean.billable_messages, clean.differences) == (3, 3, [])
    # Break the ledger three ways; reconciliation names each.
    await pool.execute("DELETE FROM billing_records WHERE message_id = $1", sms.id)
    await pool.execute("UPDATE billing_records SET unit_price_micros = 1 WHERE message_id = $1", email.id)
    await pool.execute(
        "INSERT INTO billing_records (message_id, tenant_id, channel, category, country, rate_card_version,"
        " unit_price_micros, currency, billed_at, period) SELECT $1, tenant_id, channel, category, country,"
        " rate_card_version, unit_price_micros, currency, billed_at, period FROM billing_records WHERE message_id = $2",
        free.id, read_only.id,
    )  # fmt: skip
    broken = await billing.reconcile(pool, month)
    assert {(d.message_id, d.kind) for d in broken.differences} == {
        (sms.id, "missing"),
        (email.id, "mismatch"),
        (free.id, "unexpected"),
    }


def billing_month(at_ms: int) -> Month:
    return Month.of(datetime.fromtimestamp(at_ms / 1000, tz=UTC))


async def test_sinks_sigkilled_mid_batch_bill_every_message_exactly_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tenant_id = await _tenant(pool)
    n = 12_000
    now_ms = int(time.time() * 1000)
    messages = [_message(tenant_id, i, now_ms) for i in range(n)]
    await _produce(settings, messages, [e for m in messages for e in _delivered(m, now_ms + 50)])

    env = env_for(settings, HERALD_SINKS_BATCH_MAX_RECORDS="300")
    log = settings.data_dir / "sinks.log"
    first = spawn("sinks", env, log)
    second = None
    try:
        # Polled by count, not by reading the rows: the kill must land while the sink is mid-way.
        # Progress is what the billing sink has consumed: events billed, and events parked until
        # the status projection writes their message row (the settler then bills all parked ones
        # in one transaction, so billed rows alone can jump from 0 to n).
        consumed = "SELECT (SELECT count(*) FROM billing_records) + (SELECT count(*) FROM billing_pending)"

        async def progress() -> int:
            assert first.poll() is None, log.read_text()[-2000:]
            n_consumed: int = await pool.fetchval(consumed)
            return n_consumed

        await eventually(progress, lambda seen: seen >= n // 10, "billing sink progress", seconds=60, every=0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = await pool.fetchval(consumed)
        assert at_kill < n, "the kill came too late to prove anything"

        second = spawn("sinks", env, log)
        rows = await wait_ledger_rows(pool, n, deadline_s=120)
        # Reconciliation reads the status projection, a separate consumer group that may still be
        # behind the ledger: compare once it has caught up, as the month-end run does.
        await wait_status_count(pool, n, deadline_s=120)
    finally:
        stop(first, second)
    assert len(rows) == n
    assert {r["message_id"] for r in rows} == {m.id for m in messages}
    assert {r["billed_at"] for r in rows} == {datetime.fromtimestamp((now_ms + 51) / 1000, tz=UTC)}
    result = await billing.reconcile(pool, billing_month(now_ms))
    assert (result.ledger_rows, result.billable_messages, result.differences) == (n, n, [])


async def test_a_deferred_bill_the_database_refuses_does_not_hold_back_the_others(pool: asyncpg.Pool) -> None:
    from herald.db import messages as message_store

    refused_tenant, tenant = await _tenant(pool), await _tenant(pool)
    now_ms = int(time.time() * 1000)
    refused, billed = _message(refused_tenant, 1, now_ms), _message(tenant, 2, now_ms)
    await message_store.apply_batch(pool, [refused, billed], [])
    at = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    await pool.executemany(
        "INSERT INTO billing_pending (message_id, status, at) VALUES ($1, 'delivered', $2)",
        [(refused.id, at), (billed.id, at)],
    )
    await pool.execute(f"ALTER TABLE billing_records ADD CONSTRAINT refuse_one CHECK (tenant_id <> '{refused_tenant}')")
    assert await billing.settle_pending(pool) == billing.Settled(written=1, refused=1)
    assert [r["message_id"] for r in await ledger(pool)] == [billed.id]
    assert [r["message_id"] for r in await pool.fetch("SELECT message_id FROM billing_pending")] == [refused.id]
    await pool.execute("ALTER TABLE billing_records DROP CONSTRAINT refuse_one")
    assert await billing.settle_pending(pool) == billing.Settled(written=1, refused=0)
    assert await pool.fetchval("SELECT count(*) FROM billing_pending") == 0
    assert len(await ledger(pool)) == 2


async def test_a_bill_waiting_for_a_message_that_never_comes_shows_its_age(pool: asyncpg.Pool) -> None:
    from herald.db import messages as message_store
    from herald_sinks.billing import run_settler

    tenant = await _tenant(pool)
    now_ms = int(time.time() * 1000)
    stuck, fresh = _message(tenant, 1, now_ms), _message(tenant, 2, now_ms)
    at = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    await pool.executemany(
        "INSERT INTO billing_pending (message_id, status, at, received_at) VALUES ($1, 'delivered', $2, $3)",
        [(stuck.id, at, at - timedelta(hours=2)), (fresh.id, at, at)],
    )
    backlog = await billing.pending_backlog(pool)
    assert backlog.events == 2
    assert 7200 <= backlog.oldest_seconds < 7300

    async def gauge_until(done: Callable[[float], bool]) -> float:
        gauge: float = await eventually(
            metrics.BILLING_PENDING_OLDEST._value.get, done, "herald_billing_pending_oldest_seconds", seconds=10
        )
        return gauge

    # The settler publishes the age every tick, and leaves both pending: neither message row exists.
    stop = asyncio.Event()
    settler = asyncio.create_task(run_settler(pool, 0.05, stop))
    try:
        assert await gauge_until(lambda age: age >= 7200) < 7300
        assert await pool.fetchval("SELECT count(*) FROM billing_pending") == 2
        # Once the rows are written (a parked record replayed), both are billed and the age is 0.
        await message_store.apply_batch(pool, [stuck, fresh], [])
        await gauge_until(lambda age: age == 0)
    finally:
        stop.set()
        await settler
    assert {r["message_id"] for r in await ledger(pool)} == {stuck.id, fresh.id}
    assert await billing.pending_backlog(pool) == billing.PendingBacklog(events=0, oldest_seconds=0.0)


async def test_an_email_is_billed_when_sent_even_when_its_delivery_reaches_the_sink_first(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Issue #30 defect 1: an email was billed at its `delivered` receipt's time when that event
    reached the ledger before the `sent` (the rule for email is provider acceptance), and
    `herald billing reconcile` then named it a mismatch. Near a rate-card switch or a month's end
    the first event to arrive would have chosen the version or the month."""
    tenant_id = await _tenant(pool)
    now_ms = int(time.time() * 1000)
    email = _message(tenant_id, 1, now_ms, channel=Channel.EMAIL, country=None, to="a@example.com")
    sinks = Loop(settings, run_sinks)
    try:
        await _produce(settings, [email], [_event(email, Status.DELIVERED, now_ms + 42)])
        await wait_status_count(pool, 1, "delivered")
        await asyncio.sleep(2.0)  # the ledger's own group has read it too by now
        assert await ledger(pool) == []
        await _produce(settings, [], [_event(email, Status.SENT, now_ms)])
        rows = await wait_ledger_rows(pool, 1)
    finally:
        await sinks.stop()
    assert rows[0]["billed_at"] == datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    assert (await billing.reconcile(pool, billing_month(now_ms))).differences == []
