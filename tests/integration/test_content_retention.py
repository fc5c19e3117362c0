"""Message content retention (#7): recipients and bodies are sealed on every topic and purged by
`herald retention` deleting their content key; the ledger and the status projection are kept."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald import clock
from herald.db import content_keys
from herald.db.content_keys import ContentKeys
from herald.domain.models import Category, Channel, KeyKind
from herald.domain.records import ENCODER, DeadLetterV2, OutboundMessage, SealedMessageV2
from herald.kafka.producer import Record
from herald.kafka.topics import DLQ, MESSAGE_TOPICS, class_topic
from herald.keyring import KeyRing, Unwrappable
from herald.sealing import DAY_MS, HOUR_MS, ContentUnavailable, hour_of, seal
from herald.settings import SecretSettings
from tests.integration.harness import Platform, ledger, produce, read_records, wait_ledger_rows, wait_status_count
from tests.integration.processes import run_cli

pytestmark = pytest.mark.integration
RECIPIENT = "+447400123987"
RING = KeyRing(SecretSettings().keys())  # the development KEK, as the test platform runs with


def _message(tenant_id: str, *, created_at_ms: int, ttl_ms: int = 600_000) -> OutboundMessage:
    return OutboundMessage(
        id=uuid.uuid4(), tenant_id=uuid.UUID(tenant_id), key_kind=KeyKind.LIVE, channel=Channel.SMS,
        category=Category.AUTHENTICATION, template_name="otp", template_language="en", template_version=1,
        to=RECIPIENT, country="GB", body="Your code is 654321", created_at_ms=created_at_ms,
        expires_at_ms=created_at_ms + ttl_ms,
    )  # fmt: skip


async def test_recipients_and_bodies_reach_the_broker_sealed_only(platform: Platform, pool: asyncpg.Pool) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    sent = await platform.send(auth, to=RECIPIENT)
    await platform.wait_status(auth, sent.json()["id"], {"delivered"})
    records = await read_records(platform.settings, [*MESSAGE_TOPICS, DLQ])
    assert len(records) == 1
    key, value = records[0]
    for clear in (RECIPIENT.encode(), RECIPIENT[1:].encode(), b"Your code is 123456"):
        assert clear not in key
        assert clear not in value
    # ... and the content is all there for a process holding the key.
    sealed = msgspec.json.decode(value, type=SealedMessageV2)
    keys = ContentKeys(pool, KeyRing(platform.settings.secrets.keys()), platform.settings.retention.content_days)
    await keys.load([sealed.content_key])
    opened = keys.open(sealed)
    assert (str(opened.id), opened.to, opened.body) == (sent.json()["id"], RECIPIENT, "Your code is 123456")


async def test_retention_command_purges_old_content_everywhere_and_keeps_the_ledger(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    settings = platform.settings
    tenant_id, auth = await platform.tenant_with_key(tier="standard")
    await platform.template(auth)
    delivered = (await platform.send(auth)).json()["id"]
    failed = (await platform.send(auth, to="+447400120001")).json()["id"]  # carrier-sim: opted out
    await platform.wait_status(auth, delivered, {"delivered"})
    await platform.wait_status(auth, failed, {"failed"})
    await wait_status_count(pool, 1, "delivered", tenant_id)
    billed = await wait_ledger_rows(pool, 1)

    # A dead letter from 40 days ago, sealed under that hour's key (as the API did back then).
    old_ms = clock.now_ms() - 40 * DAY_MS
    old_hour = hour_of(old_ms)
    old_key = os.urandom(32)
    await pool.execute("INSERT INTO content_keys (hour, key) VALUES ($1, $2)", old_hour, old_key)
    old = seal(AESGCM(old_key), old_hour, _message(tenant_id, created_at_ms=old_ms))
    letter = DeadLetterV2(message=old, reason="opted_out", kind="permanent", failed_at_ms=old_ms + 1000)
    await produce(settings, [Record(DLQ, str(old.id).encode(), ENCODER.encode(letter))])

    # Before: a process that does not enforce the window itself (a year's retention) can read it.
    lenient = ContentKeys(pool, RING, 365)
    await lenient.load([old_hour])
    assert lenient.open(old).to == RECIPIENT
    assert "2 matched, would replay 1, 1 past content retention" in run_cli(
        settings, "dlq", "replay", "--tenant-id", tenant_id, "--dry-run"
    )

    out = run_cli(settings, "retention")
    assert "1 hours of message content (older than 30 days)" in out, out

    # After: the old hour's key is gone, so nobody can open that content, from any copy.
    assert await pool.fetchval("SELECT count(*) FROM content_keys WHERE hour = $1", old_hour) == 0
    after = ContentKeys(pool, RING, 365)
    await after.load([old_hour])
    with pytest.raises(ContentUnavailable):
        after.open(old)
    # This hour's content is within retention and untouched.
    assert await pool.fetchval("SELECT count(*) FROM content_keys WHERE hour = $1", hour_of(clock.now_ms())) == 1
    assert "2 matched, replayed 1, 1 past content retention" in run_cli(
        settings, "dlq", "replay", "--tenant-id", tenant_id
    )
    # The ledger and the status projection are kept.
    assert await ledger(pool) == billed
    view = (await platform.http.get(f"/v1/messages/{delivered}", headers=auth)).json()
    assert view["status"] == "delivered"


async def test_a_message_whose_content_cannot_be_opened_is_never_sent(platform: Platform) -> None:
    """A record sealed under a key the database does not hold (deleted early, or forged): not
    sent; `expired` once past its TTL, else `failed` with `content_unavailable`."""
    settings = platform.settings
    tenant_id, auth = await platform.tenant_with_key()
    await platform.template(auth)
    hour = hour_of(clock.now_ms()) - 72  # within retention, but no key was ever made for it here
    unknown = AESGCM(os.urandom(32))
    live = seal(unknown, hour, _message(tenant_id, created_at_ms=clock.now_ms()))
    stale = seal(unknown, hour, _message(tenant_id, created_at_ms=clock.now_ms() - 2 * HOUR_MS))
    topic = class_topic(Category.AUTHENTICATION)
    await produce(settings, [Record(topic, m.id.bytes, ENCODER.encode(m)) for m in (live, stale)])
    failed = await platform.wait_status(auth, str(live.id), {"failed", "expired", "delivered"})
    assert failed["status"] == "failed"
    assert failed["events"][-1]["detail"] == "content_unavailable"
    expired = await platform.wait_status(auth, str(stale.id), {"failed", "expired", "delivered"})
    assert (expired["status"], expired["events"][-1]["detail"]) == ("expired", "ttl_elapsed")
    assert platform.sim_sends() == {}


async def test_the_hours_first_sends_fetch_one_key_without_starving_the_pool(platform: Platform) -> None:
    """More concurrent first-of-the-hour sends than the API has connections, for a tenant with a
    recipient limit (whose sends hold a connection while they produce): all accepted. Sealing
    inside that transaction once deadlocked the pool here."""
    _, auth = await platform.tenant_with_key(tier="standard")
    await platform.template(auth)
    pool_max = platform.settings.database.pool_max
    answers = await asyncio.gather(*(platform.send(auth, to=f"+4474005{i:05d}") for i in range(3 * pool_max)))
    assert [r.status_code for r in answers] == [202] * (3 * pool_max)


async def test_api_processes_racing_to_create_the_hours_key_all_seal_with_the_one_stored(
    database_url: str,
) -> None:
    """Eight API processes (a ContentKeys each, own connections) whose first sends of an hour
    come at once: every one seals, and with the key that was stored. Once, the losers of the
    race read the table in the snapshot taken before the winner committed and found no key."""
    racers = await asyncpg.create_pool(database_url, min_size=8, max_size=8)
    assert racers is not None
    try:
        start = clock.now_ms() + 1000 * HOUR_MS  # hours nobody has used yet
        for hour in range(30):
            at = start + hour * HOUR_MS
            processes = [ContentKeys(racers, RING, 8, clock=lambda at=at: at) for _ in range(8)]
            sealed = await asyncio.gather(
                *(keys.seal([_message(str(uuid.uuid4()), created_at_ms=at)]) for keys in processes)
            )
            reader = ContentKeys(racers, RING, 8, clock=lambda at=at: at)
            await reader.load({s.content_key for (s,) in sealed})
            assert {reader.open(s).to for (s,) in sealed} == {RECIPIENT}
    finally:
        await racers.close()


async def test_a_process_stops_reading_content_once_past_retention_even_with_the_key_cached(
    pool: asyncpg.Pool,
) -> None:
    now = [clock.now_ms()]
    keys = ContentKeys(pool, RING, 8, clock=lambda: now[0])
    (sealed,) = await keys.seal([_message(str(uuid.uuid4()), created_at_ms=now[0])])
    await keys.load([sealed.content_key])
    assert keys.open(sealed).to == RECIPIENT
    now[0] += 8 * DAY_MS + HOUR_MS  # the hour ended more than 8 days ago; `herald retention` has not run
    await keys.load([sealed.content_key])
    with pytest.raises(ContentUnavailable):
        keys.open(sealed)
    assert await pool.fetchval("SELECT count(*) FROM content_keys") == 1  # only the command deletes


async def test_content_keys_are_stored_wrapped_and_open_only_under_a_configured_kek(pool: asyncpg.Pool) -> None:
    """#22 item 1: the database alone must not yield a content key. A key written before
    migration 0020 (in clear) is wrapped by `rewrap`; after a KEK rotation and a rewrap, only
    the new KEK opens them, and a process given only the old KEK opens nothing."""
    at = clock.now_ms() + 2000 * HOUR_MS  # an hour nobody has used
    (sealed,) = await ContentKeys(pool, RING, 8, clock=lambda: at).seal([_message(str(uuid.uuid4()), created_at_ms=at)])
    row = await pool.fetchrow("SELECT key, wrapped FROM content_keys WHERE hour = $1", sealed.content_key)
    assert row["key"] is None
    assert RING.unwrap(row["wrapped"], f"content_key:{sealed.content_key}") not in row["wrapped"]
    legacy_hour, legacy_key = sealed.content_key + 1, os.urandom(32)
    await pool.execute("INSERT INTO content_keys (hour, key) VALUES ($1, $2)", legacy_hour, legacy_key)

    new_kek = os.urandom(32)
    rotated = KeyRing([new_kek, *SecretSettings().keys()])
    assert await content_keys.rewrap(pool, rotated) >= 2  # the clear row and the old KEK's rows
    assert await content_keys.rewrap(pool, rotated) == 0  # idempotent
    assert await pool.fetchval("SELECT count(*) FROM content_keys WHERE key IS NOT NULL") == 0

    after = ContentKeys(pool, KeyRing([new_kek]), 8, clock=lambda: at)
    await after.load([sealed.content_key])
    assert after.open(sealed).to == RECIPIENT
    assert (await content_keys.fetch(pool, KeyRing([new_kek]), [legacy_hour]))[legacy_hour] == legacy_key
    with pytest.raises(Unwrappable):
        await content_keys.fetch(pool, RING, [sealed.content_key])  # the old KEK alone: nothing opens
