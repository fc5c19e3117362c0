"""Provider receipts: recorded as reported, then bound to Herald's own record of the send.

Three tables (migration 0016): `provider_messages` (which provider took which message, written
from the worker's `sent` events by the status sink), `provider_receipts` (what providers
reported, keyed by provider, their id and the status, so a replay is the same row) and
`receipt_finals` (the first final report per message). The rules are `herald.domain.receipts`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec

from herald.clock import to_datetime, to_ms
from herald.domain.models import Category
from herald.domain.reasons import receipt_reason
from herald.domain.receipts import RECEIPT_STATUSES, Reported, Waiting, contradicts, effective_time, first_finals
from herald.domain.records import StatusEventV1
from herald.domain.status import Status


async def record_sends(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], events: Sequence[StatusEventV1]) -> None:
    """Remember every accepted send (a message re-sent after a crash has two). Idempotent."""
    sends = [e for e in events if e.status is Status.SENT and e.provider and e.provider_message_id]
    if not sends:
        return
    await conn.execute(
        "INSERT INTO provider_messages (provider, provider_message_id, message_id, tenant_id, sent_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[])"
        " ON CONFLICT DO NOTHING",
        [e.provider for e in sends],
        [e.provider_message_id for e in sends],
        [e.message_id for e in sends],
        [e.tenant_id for e in sends],
        [to_datetime(e.at_ms) for e in sends],
    )


async def record(pool: asyncpg.Pool, provider: str, receipts: Sequence[Reported]) -> None:
    """Keep what `provider` reported, as it reported it, in one statement (all or nothing). A
    receipt already recorded (a replay, a provider's retry) changes nothing."""
    await pool.execute(
        "INSERT INTO provider_receipts (provider, provider_message_id, status, reported_at, reason, callback_data,"
        " pricing_category, billable, provider_error)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::uuid[], $7::text[],"
        " $8::boolean[], $9::text[])"
        " ON CONFLICT DO NOTHING",
        provider,
        [r.provider_message_id for r in receipts],
        [r.status.value for r in receipts],
        [None if r.at_ms is None else to_datetime(r.at_ms) for r in receipts],
        [r.reason for r in receipts],
        [r.callback_data for r in receipts],
        [None if r.pricing_category is None else r.pricing_category.value for r in receipts],
        [r.billable for r in receipts],
        [r.provider_error for r in receipts],
    )


_BINDABLE = """
SELECT r.provider, r.provider_message_id, r.status, r.reported_at, r.received_at, r.reason, r.pricing_category,
       r.billable, r.provider_error,
       coalesce(p.message_id, q.message_id) AS message_id, coalesce(p.tenant_id, q.tenant_id) AS tenant_id,
       coalesce(p.sent_at, q.sent_at) AS sent_at
FROM {waiting}
-- Lateral, one index probe per waiting receipt: a plain join hashed the waiting receipts and
-- scanned every recorded send on every poll (11 ms at 100,000 sends, growing with them).
LEFT JOIN LATERAL (
    SELECT s.message_id, s.tenant_id, s.sent_at FROM provider_messages s
    WHERE s.provider = r.provider AND s.provider_message_id = r.provider_message_id
    LIMIT 1  -- (the key is unique) keeps the planner from flattening this into that hash join
) p ON true
-- Only when Herald has no record of the provider's id: a send of the echoed message through the
-- same provider (its first), never a message of another provider's.
LEFT JOIN LATERAL (
    SELECT s.message_id, s.tenant_id, s.sent_at FROM provider_messages s
    WHERE p.message_id IS NULL AND s.provider = r.provider AND s.message_id = r.callback_data
    ORDER BY s.message_id, s.sent_at LIMIT 1  -- the index's order: its scan, not a bitmap AND
) q ON true
WHERE coalesce(p.message_id, q.message_id) IS NOT NULL
{order}
"""
# The sweep: every waiting receipt, oldest first, through the partial index on the waiting ones
# (which walks the dead entries binding leaves until autovacuum: hence only every few seconds).
_ALL_WAITING = _BINDABLE.format(
    waiting="provider_receipts r",
    order="AND r.outcome IS NULL ORDER BY r.received_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
)
# By key: a probe of the primary key per send, whatever the number of receipts waiting. The
# lateral keeps the planner off the partial index above (it matches the sweep's ORDER BY). A
# receipt given up as unmatched binds too: its send was recorded late (the sinks were down).
_WAITING_FOR = _BINDABLE.format(
    waiting="""unnest($2::text[], $3::text[]) AS k(provider, provider_message_id)
CROSS JOIN LATERAL (
    SELECT * FROM provider_receipts w
    WHERE w.provider = k.provider AND w.provider_message_id = k.provider_message_id
      AND (w.outcome IS NULL OR w.outcome = 'unmatched')
    FOR UPDATE SKIP LOCKED
) r""",
    order="ORDER BY r.received_at LIMIT $1",  # arrival order: the first final report is the first
)


_UNMATCHED = """
UPDATE provider_receipts r SET outcome = 'unmatched'
WHERE r.outcome IS NULL AND r.received_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM provider_messages s
                  WHERE s.provider = r.provider AND s.provider_message_id = r.provider_message_id)
  AND NOT EXISTS (SELECT 1 FROM provider_messages s
                  WHERE s.provider = r.provider AND s.message_id = r.callback_data)
RETURNING r.provider
"""


async def give_up_unmatched(pool: asyncpg.Pool, older_than_seconds: float) -> dict[str, int]:
    """Take the receipts waiting longer than `older_than_seconds` for a send Herald has no record
    of out of the waiting set (outcome `unmatched`); how many, per provider. Receipts whose send
    is known stay waiting, whatever their age (their binding failed: the broker was away)."""
    return dict(Counter(r["provider"] for r in await pool.fetch(_UNMATCHED, older_than_seconds)))


class Bound(msgspec.Struct, frozen=True):
    events: list[StatusEventV1]
    late: list[Waiting]


async def bind(
    pool: asyncpg.Pool,
    limit: int,
    publish: Callable[[list[StatusEventV1]], Awaitable[None]],
    only: Sequence[tuple[str, str]] | None = None,
) -> Bound:
    """Bind up to `limit` waiting receipts whose send is known, oldest first (with `only`, every
    receipt waiting for those (provider, provider's id) sends, whatever `limit`): publish their status events
    (`publish` returns once the broker has them), then mark them, in one transaction. A failure
    anywhere leaves them waiting; a crash after `publish` publishes the same events again (the
    same time, as every input is stored), which every sink absorbs. Receipts whose send is not
    recorded yet (the `sent` event is still on its way) wait. A receipt another binder holds is
    skipped, not waited for."""
    async with pool.acquire() as conn, conn.transaction():
        if only is None:
            rows = await conn.fetch(_ALL_WAITING, limit)
        else:
            # Every status a provider reports for each send: none of theirs is left to the sweep.
            limit = len(only) * len(RECEIPT_STATUSES)
            rows = await conn.fetch(_WAITING_FOR, limit, [p for p, _ in only], [i for _, i in only])
        if not rows:
            return Bound([], [])
        waiting = [
            Waiting(
                provider=r["provider"], provider_message_id=r["provider_message_id"], status=Status(r["status"]),
                reported_ms=None if r["reported_at"] is None else to_ms(r["reported_at"]),
                received_ms=to_ms(r["received_at"]), reason=r["reason"], message_id=r["message_id"],
                pricing_category=None if r["pricing_category"] is None else Category(r["pricing_category"]),
                billable=r["billable"], provider_error=r["provider_error"],
                tenant_id=r["tenant_id"], sent_ms=to_ms(r["sent_at"]),
            )
            for r in rows
        ]  # fmt: skip
        finals = await _decide_finals(conn, first_finals(waiting), {w.message_id for w in waiting})
        is_late = [contradicts(finals.get(w.message_id), w.status) for w in waiting]
        # A report is never dated before one Herald recorded earlier for the same send: the
        # events of a message reach every sink in the order their times say, so the first
        # billable one to reach the ledger is also the earliest (reconciliation's rule).
        floors = await _bound_until(conn, waiting)
        events = []
        for w, late in zip(waiting, is_late, strict=True):
            if late:
                continue
            key = (w.provider, w.provider_message_id)
            at_ms = max(effective_time(w.reported_ms, w.sent_ms, w.received_ms), floors.get(key, w.sent_ms))
            floors[key] = at_ms
            events.append(
                StatusEventV1(
                    message_id=w.message_id, tenant_id=w.tenant_id, status=w.status, at_ms=at_ms,
                    reason=receipt_reason(w.status is Status.FAILED, w.reason),
                    provider_message_id=w.provider_message_id, provider=w.provider,
                    pricing_category=w.pricing_category, billable=w.billable,
                    provider_error=w.provider_error if w.status is Status.FAILED else None,
                )
            )  # fmt: skip
        await publish(events)
        await conn.execute(
            "UPDATE provider_receipts r SET outcome = u.outcome, message_id = u.message_id, bound_at = now()"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[])"
            " AS u(provider, provider_message_id, status, outcome, message_id)"
            " WHERE (r.provider, r.provider_message_id, r.status) = (u.provider, u.provider_message_id, u.status)",
            [w.provider for w in waiting],
            [w.provider_message_id for w in waiting],
            [w.status.value for w in waiting],
            ["late" if late else "bound" for late in is_late],
            [w.message_id for w in waiting],
        )
        return Bound(events, [w for w, late in zip(waiting, is_late, strict=True) if late])


_BOUND = """
SELECT k.provider, k.provider_message_id, b.reported_at, b.received_at
FROM unnest($1::text[], $2::text[]) AS k(provider, provider_message_id)
CROSS JOIN LATERAL (
    SELECT reported_at, received_at FROM provider_receipts b
    WHERE b.provider = k.provider AND b.provider_message_id = k.provider_message_id AND b.outcome = 'bound'
) b
"""


async def _bound_until(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], waiting: list[Waiting]
) -> dict[tuple[str, str], int]:
    """Per send of `waiting`, the latest time Herald gave a report of it already bound (the same
    rule, so the same time as then)."""
    sent = {(w.provider, w.provider_message_id): w.sent_ms for w in waiting}
    keys = sorted(sent)
    floors: dict[tuple[str, str], int] = {}
    for r in await conn.fetch(_BOUND, [p for p, _ in keys], [i for _, i in keys]):
        key = (r["provider"], r["provider_message_id"])
        reported = None if r["reported_at"] is None else to_ms(r["reported_at"])
        at_ms = effective_time(reported, sent[key], to_ms(r["received_at"]))
        floors[key] = max(floors.get(key, at_ms), at_ms)
    return floors


async def _decide_finals(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], proposed: dict[uuid.UUID, Status], messages: set[uuid.UUID]
) -> dict[uuid.UUID, Status]:
    """The first final report of each of `messages`: an earlier one stands; otherwise this
    batch's `proposed` one (the primary key settles two binders deciding at once: the second
    waits for the first to commit, then keeps its decision)."""
    if proposed:
        ordered = sorted(proposed.items())  # one key order for every binder: no deadlock between two
        await conn.execute(
            "INSERT INTO receipt_finals (message_id, status) SELECT * FROM unnest($1::uuid[], $2::text[])"
            " ON CONFLICT DO NOTHING",
            [m for m, _ in ordered],
            [s.value for _, s in ordered],
        )
    rows = await conn.fetch("SELECT message_id, status FROM receipt_finals WHERE message_id = ANY($1::uuid[])",
                            list(messages))  # fmt: skip
    return {r["message_id"]: Status(r["status"]) for r in rows}


async def send_of(pool: asyncpg.Pool, provider: str, provider_message_id: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The tenant and message of the send `provider` took under this id, once it is recorded."""
    row = await pool.fetchrow(
        "SELECT tenant_id, message_id FROM provider_messages WHERE provider = $1 AND provider_message_id = $2"
        " LIMIT 1",
        provider, provider_message_id,
    )  # fmt: skip
    return None if row is None else (row["tenant_id"], row["message_id"])
