"""Search benchmark (issue #25 item 4): `GET /v1/messages` on a tenant with 10,000,000 messages.

The API alone (`herald api` on the embedded PostgreSQL and broker, as `make run` starts them);
its database seeded with --rows messages of one tenant (and a tenth as many of another, so the
tenant filter does work) spread over 30 days: 90% delivered, 5% failed, 3% sent, 2% expired; 20
templates; three channels; one message in ten with a reference. Then, one request at a time,
each query shape --requests times over HTTP, p50 and p99, against the ceiling measured in the same
run: `GET /v1/messages/{id}` (the timeline of one message, a primary-key read through the same
stack). EXPLAIN (ANALYZE, BUFFERS) of each shape's statement is printed: every one reads its
index in listing order and stops after the page.

    make bench-search   # = .venv/bin/python -m loadtests.search
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from herald.db.listings import message_query
from herald.domain.models import Channel
from herald.domain.search import Cursor, MessageFilter, TimeRange
from herald.domain.status import Status
from loadtests.stack import bench_stack

SEED = """
INSERT INTO messages (id, tenant_id, key_kind, channel, category, template_name, template_language,
                      template_version, country, reference, status, created_at, expires_at, updated_at)
SELECT gen_random_uuid(), $1, 'live', (ARRAY['sms', 'whatsapp', 'email'])[1 + n % 3], 'utility',
       'template_' || (n % 20), 'en', 1, 'GB',
       CASE WHEN n % 10 = 0 THEN 'booking-' || n END,
       CASE WHEN n % 100 < 90 THEN 'delivered' WHEN n % 100 < 95 THEN 'failed'
            WHEN n % 100 < 98 THEN 'sent' ELSE 'expired' END,
       $2::timestamptz + (n * $3::double precision) * interval '1 millisecond',
       $2::timestamptz + interval '40 days', $2::timestamptz + interval '40 days'
FROM generate_series($4::bigint, $5::bigint) AS n
"""
CHUNK = 1_000_000
SPAN = timedelta(days=30)


async def seed(dsn: str, tenant_id: uuid.UUID, rows: int, start: datetime) -> float:
    """--rows messages of the tenant and a tenth as many of another; the seconds it took."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        step = SPAN / timedelta(milliseconds=1) / rows
        for owner, count in ((tenant_id, rows), (uuid.uuid4(), rows // 10)):
            for first in range(0, count, CHUNK):
                await conn.execute(SEED, owner, start, step, first, min(first + CHUNK, count) - 1)
        await conn.execute("ANALYZE messages")
        return time.monotonic() - started
    finally:
        await conn.close()


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def timed(
    http: httpx.AsyncClient, auth: dict[str, str], path: str, params: dict[str, str], n: int
) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        r = await http.get(path, headers=auth, params=params)
        samples.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text[:300]
    return samples


async def explain(dsn: str, tenant_id: uuid.UUID, found: MessageFilter, after: Cursor | None) -> str:
    sql, args = message_query(tenant_id, found, after, 101)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
        return "\n".join("    " + r[0] for r in rows)
    finally:
        await conn.close()


async def run(base: str, admin_token: str, dsn: str, rows: int, requests: int) -> None:
    admin = {"authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        tenant = (await http.post("/v1/admin/tenants", headers=admin,
                                  json={"name": "Search", "tier": "enterprise", "verified": True})).json()  # fmt: skip
        tenant_id = uuid.UUID(tenant["id"])
        key = (await http.post(f"/v1/admin/tenants/{tenant_id}/keys", headers=admin, json={"kind": "live"})).json()
        auth = {"authorization": f"Bearer {key['key']}"}
        start = datetime.now(UTC) - SPAN
        seconds = await seed(dsn, tenant_id, rows, start)
        print(f"seeded {rows:,} messages (+{rows // 10:,} of another tenant) in {seconds:.0f} s")

        newest = (await http.get("/v1/messages", headers=auth, params={"limit": "100"})).json()
        one = newest["items"][0]["id"]
        ceiling = _ms(await timed(http, auth, f"/v1/messages/{one}", {}, requests))
        # A cursor 100 pages in (10,000 rows down), as a client paging through reaches it.
        deep = newest["next"]
        for _ in range(99):
            deep = (await http.get("/v1/messages", headers=auth, params={"limit": "100", "after": deep})).json()["next"]
        day = (start + SPAN / 2).isoformat()
        next_day = (start + SPAN / 2 + timedelta(days=1)).isoformat()
        reference = f"booking-{(rows // 2) // 10 * 10}"
        shapes: list[tuple[str, dict[str, str], MessageFilter, Cursor | None]] = [
            ("newest 100", {}, MessageFilter(), None),
            ("page 101 (cursor 10,000 rows down)", {"after": deep}, MessageFilter(), Cursor.decode(deep)),
            ("status=failed", {"status": "failed"}, MessageFilter(status=Status.FAILED), None),
            ("reference=<one>", {"reference": reference}, MessageFilter(reference=reference), None),
            ("template=template_7", {"template": "template_7"}, MessageFilter(template="template_7"), None),
            ("channel=email", {"channel": "email"}, MessageFilter(channel=Channel.EMAIL), None),
            ("one day (created_after/before)", {"created_after": day, "created_before": next_day},
             MessageFilter(window=TimeRange(datetime.fromisoformat(day), datetime.fromisoformat(next_day))), None),
            ("status=failed, template=template_12", {"status": "failed", "template": "template_12"},
             MessageFilter(status=Status.FAILED, template="template_12"), None),
        ]  # fmt: skip
        print(f"ceiling: GET /v1/messages/{{id}} p50 {ceiling[0]:.1f} ms, p99 {ceiling[1]:.1f} ms, {requests} requests")
        plans: list[tuple[str, str]] = []
        for name, params, found, after in shapes:
            p50, p99 = _ms(await timed(http, auth, "/v1/messages", {"limit": "100", **params}, requests))
            print(f"{name:<40} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ratio p50 to ceiling {p50 / ceiling[0]:.2f}")
            plans.append((name, await explain(dsn, tenant_id, found, after)))
        for name, plan in plans:
            print(f"\n{name}:\n{plan}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-bench-search-") as tmp, bench_stack(Path(tmp), ("api",)) as stack:
        asyncio.run(run(stack.api_url, stack.admin_token, stack.database_url, args.rows, args.requests))


if __name__ == "__main__":
    main()

