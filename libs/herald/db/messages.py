"""The message-status projection: rows from the class topics, events from `herald.events`.

`apply_batch` is idempotent and order-independent: message rows and events are inserted with
ON CONFLICT DO NOTHING, then every touched message's status is recomputed from its full event
set with `status.fold`. So a replayed batch, or an event read before its message row, ends in the
same state.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from herald.clock import to_datetime
from herald.db import receipts
from herald.domain.reasons import Reason
from herald.domain.records import MessageEnvelope, StatusEventV1
from herald.domain.status import RANK, Status, fold


class EventView(msgspec.Struct, frozen=True):
    status: Status
    at: datetime
    detail: Reason | None = None
    provider_error: str | None = None
    provider: str | None = None
    """On `sent`: the provider that took it (`sms:<configured name>`, `carrier-sim`, `whatsapp:<waba>`)."""


class Charge(msgspec.Struct, frozen=True):
    """The message's billing record, when it has one."""

    unit_price_micros: int
    currency: str
    rate_card_version: int
    billed_at: datetime
    quantity: int
    """What the line charges for (an SMS's segments): the amount is quantity x unit price."""


class MessageView(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: Status
    channel: str
    category: str
    template_name: str
    template_language: str
    template_version: int
    reference: str | None
    created_at: datetime
    events: list[EventView]
    segments: int
    charge: Charge | None = None
    replay_of: uuid.UUID | None = None


class Transition(msgspec.Struct, frozen=True):
    """A projected status change, for metrics: how long after acceptance it happened."""

    tenant_id: uuid.UUID
    category: str
    channel: str
    status: Status
    seconds_since_accepted: float


class Applied(msgspec.Struct, frozen=True):
    transitions: list[Transition]
    duplicate_sends: int
    """Sends of a message already delivered under another provider id (a re-send after a worker
    crash): a `delivered` whose provider id differs from the recorded one."""


async def _duplicate_sends(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], events: Sequence[StatusEventV1]
) -> int:
    # Delivery receipts only: each send the provider accepted yields one, while a `sent` event may
    # or may not have been produced before the crash (counting both would count some twice).
    sent = [e for e in events if e.provider_message_id is not None and e.status is Status.DELIVERED]
    if not sent:
        return 0
    # Counted where it is noted (migration 0019): the same receipt applied again counts nothing.
    counted = await conn.fetch(
        "INSERT INTO duplicate_deliveries (message_id, provider_message_id)"
        " SELECT DISTINCT n.id, n.pid FROM unnest($1::uuid[], $2::text[], $3::text[]) AS n(id, status, pid)"
        " JOIN message_events e ON e.message_id = n.id AND e.status = n.status"
        " WHERE e.provider_message_id IS DISTINCT FROM n.pid"
        " ON CONFLICT DO NOTHING RETURNING 1",
        [e.message_id for e in sent], [e.status.value for e in sent], [e.provider_message_id for e in sent],
    )  # fmt: skip
    return len(counted)


async def apply_batch(
    pool: asyncpg.Pool, messages: Sequence[MessageEnvelope], events: Sequence[StatusEventV1]
) -> Applied:
    """Make the batch durable in one transaction (the caller commits offsets only after this)."""
    touched = list({*(m.id for m in messages), *(e.message_id for e in events)})
    async with pool.acquire() as conn, conn.transaction():
        # A message's row (class topic) and its events (events topic) may be applied by two sink
        # processes at once. Per-message locks, taken in a fixed order, make the second wait and
        # then see the first's commit, so neither recomputes from a partial picture.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM"
            " (SELECT DISTINCT hashtextextended(id::text, 0) AS k FROM unnest($1::uuid[]) id ORDER BY 1) l",
            touched,
        )
        if messages:
            # One statement over arrays, not a row-by-row executemany (several times cheaper for
            # the server and the driver); a repeated id keeps its first record. A message whose
            # `not_before` is still ahead was sent with `send_at`: `scheduled` until its record
            # comes again on its release (`herald_worker.schedule`), which makes it `accepted`.
            first = list({m.id: m for m in reversed(messages)}.values())[::-1]
            await conn.execute(
                "INSERT INTO messages (id, tenant_id, key_kind, channel, category, template_name,"
                " template_language, template_version, country, reference, status, created_at, expires_at, tier,"
                " replay_of, segments, campaign_id) SELECT id, tenant_id, key_kind, channel, category, template_name,"
                " template_language, template_version, country, reference,"
                " CASE WHEN not_before > now() + interval '1 second' THEN 'scheduled' ELSE 'accepted' END,"
                " created_at, expires_at, tier, replay_of, segments, campaign_id"
                " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
                " $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::uuid[],"
                " $15::smallint[], $16::timestamptz[], $17::uuid[]) AS r(id, tenant_id, key_kind, channel, category,"
                " template_name, template_language, template_version, country, reference, created_at, expires_at, tier,"
                " replay_of, segments, not_before, campaign_id)"
                " ON CONFLICT (id) DO UPDATE SET status = 'accepted', updated_at = now()"
                " WHERE messages.status = 'scheduled' AND excluded.status = 'accepted'",
                [m.id for m in first],
                [m.tenant_id for m in first],
                [m.key_kind.value for m in first],
                [m.channel.value for m in first],
                [m.category.value for m in first],
                [m.template_name for m in first],
                [m.template_language for m in first],
                [m.template_version for m in first],
                [m.country for m in first],
                [m.reference for m in first],
                [to_datetime(m.created_at_ms) for m in first],
                [to_datetime(m.expires_at_ms) for m in first],
                [m.tier.value if m.tier is not None else None for m in first],
                [m.replay_of for m in first],
                [m.segments for m in first],
                [to_datetime(m.not_before_ms) for m in first],
                [m.campaign_id for m in first],
            )
        duplicates = 0
        if events:
            await conn.execute(
                "INSERT INTO message_events (message_id, status, at, reason, provider_message_id, pricing_category,"
                " billable, provider_error)"
                " SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],"
                " $7::boolean[], $8::text[])"
                " ON CONFLICT (message_id, status) DO NOTHING",
                [e.message_id for e in events],
                [e.status.value for e in events],
                [to_datetime(e.at_ms) for e in events],
                [e.reason for e in events],
                [e.provider_message_id for e in events],
                [None if e.pricing_category is None else e.pricing_category.value for e in events],
                [e.billable for e in events],
                [e.provider_error for e in events],
            )
            duplicates = await _duplicate_sends(conn, events)
            await receipts.record_sends(conn, events)
        return Applied(await _recompute(conn, touched), duplicates)


async def _recompute(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], ids: list[uuid.UUID]) -> list[Transition]:
    rows = await conn.fetch(
        "SELECT m.id, m.tenant_id, m.status, m.category, m.channel, m.created_at, e.status AS event_status, e.at"
        " FROM messages m"
        " LEFT JOIN message_events e ON e.message_id = m.id WHERE m.id = ANY($1::uuid[])",
        ids,
    )
    current: dict[uuid.UUID, str] = {}
    accepted: dict[uuid.UUID, tuple[uuid.UUID, str, str, datetime]] = {}
    seen: dict[uuid.UUID, list[tuple[int, Status]]] = {}
    for r in rows:
        current[r["id"]] = r["status"]
        accepted[r["id"]] = (r["tenant_id"], r["category"], r["channel"], r["created_at"])
        history = seen.setdefault(r["id"], [])
        if r["event_status"] is not None:
            history.append((int(r["at"].timestamp() * 1000), Status(r["event_status"])))
    changes = []
    transitions = []
    for message_id, history in seen.items():
        start = Status.SCHEDULED if current[message_id] == Status.SCHEDULED else Status.ACCEPTED
        status = fold(history, start)
        if status.value != current[message_id]:
            changes.append((message_id, status.value))
            tenant_id, category, channel, created_at = accepted[message_id]
            at_ms = max((at for at, s in history if s is status), default=int(created_at.timestamp() * 1000))
            seconds = max(0.0, at_ms / 1000 - created_at.timestamp())
            transitions.append(Transition(tenant_id, category, channel, status, seconds))
    if changes:
        await conn.execute(
            "UPDATE messages m SET status = c.status, updated_at = now()"
            " FROM unnest($1::uuid[], $2::text[]) AS c(id, status) WHERE m.id = c.id",
            [c[0] for c in changes],
            [c[1] for c in changes],
        )
    return transitions


async def status_of(pool: asyncpg.Pool, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Status | None:
    """The message's status; None if the tenant has no such message (or it is not projected yet)."""
    found = await pool.fetchval("SELECT status FROM messages WHERE id = $1 AND tenant_id = $2", message_id, tenant_id)
    return None if found is None else Status(found)


async def get(pool: asyncpg.Pool, tenant_id: uuid.UUID, message_id: uuid.UUID) -> MessageView | None:
    """Tenant-scoped: another tenant's id is indistinguishable from an unknown one. Read from one
    snapshot: the status and the timeline agree (read apart, a failure committed between them
    showed a `sent` message whose timeline ended `failed`)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            "SELECT m.id, m.status, m.channel, m.category, m.template_name, m.template_language, m.template_version,"
            " m.reference, m.created_at, m.replay_of, m.segments, b.quantity, b.unit_price_micros, b.currency,"
            " b.rate_card_version, b.billed_at"
            " FROM messages m LEFT JOIN billing_records b ON b.message_id = m.id WHERE m.id = $1 AND m.tenant_id = $2",
            message_id,
            tenant_id,
        )
        if row is None:
            return None
        rows = await conn.fetch(
            "SELECT status, at, reason, provider_error FROM message_events WHERE message_id = $1", message_id
        )
        # Which provider took it (two, after a re-send following a worker crash: the first).
        provider = await conn.fetchval(
            "SELECT provider FROM provider_messages WHERE message_id = $1 ORDER BY sent_at LIMIT 1", message_id
        )
    # Time order, and the lifecycle's order between events of one instant (a receipt clamped to
    # its send's time shares it), as the projection folds them.
    events = sorted(rows, key=lambda e: (e["at"], RANK[Status(e["status"])]))
    accepted = EventView(status=Status.ACCEPTED, at=row["created_at"])
    return MessageView(
        id=row["id"],
        status=Status(row["status"]),
        channel=row["channel"],
        category=row["category"],
        template_name=row["template_name"],
        template_language=row["template_language"],
        template_version=row["template_version"],
        reference=row["reference"],
        replay_of=row["replay_of"],
        segments=row["segments"],
        created_at=row["created_at"],
        events=[
            accepted,
            *(
                EventView(
                    status=Status(e["status"]),
                    at=e["at"],
                    detail=_reason(e["reason"]),
                    provider_error=e["provider_error"],
                    provider=provider if e["status"] == Status.SENT else None,
                )
                for e in events
            ),
        ],
        charge=None
        if row["billed_at"] is None
        else Charge(
            row["unit_price_micros"], row["currency"], row["rate_card_version"], row["billed_at"], row["quantity"]
        ),
    )


def _reason(stored: str | None) -> Reason | None:
    return None if stored is None else Reason(stored)


async def claim_overdue_receipts(
    pool: asyncpg.Pool, older_than: datetime, claim_seconds: float, limit: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(message id, tenant id) of up to `limit` messages still `sent` since before `older_than`,
    each claimed for `claim_seconds` of the database's clock: until then no other call returns
    it, whether it runs at the same time (rows locked by one are skipped by the other) or later.
    A claimed message still `sent` when its claim lapses is returned again."""
    rows = await pool.fetch(
        """
        UPDATE messages m SET receipt_swept_at = now()
        FROM (
            SELECT id FROM messages
            WHERE status = 'sent' AND updated_at < $1
              AND (receipt_swept_at IS NULL OR receipt_swept_at < now() - make_interval(secs => $2))
            ORDER BY updated_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE m.id = due.id
        RETURNING m.id, m.tenant_id
        """,
        older_than,
        claim_seconds,
        limit,
    )
    return [(r["id"], r["tenant_id"]) for r in rows]
