"""Delivery under pressure (issue #4), on the whole platform as `make run` starts it.

One run, one machine (api, worker, sinks, carrier-sim, broker, database and the load generator
share the two cores):

1. ceiling: the carrier-sim alone, `wrk` posting sends straight to it (no Herald in the path);
2. priority (first, on an idle platform): a marketing backlog of --backlog messages is queued,
   then authentication messages are sent one by one at ~20/s for --otp-seconds while the worker
   drains marketing flat out; accepted -> handed-to-provider (`sent`) p50 and p99 for them, with
   the marketing backlog still queued when the last OTP went out;
3. sustained: an enterprise tenant (rate limit lifted) keeps the queue fed with batches of 1,000
   utility messages for --seconds; the figure is messages reaching `delivered` in PostgreSQL
   per second (accept -> worker -> carrier-sim -> signed receipt -> API -> events -> status sink),
   after a warm-up (the rest of the marketing backlog competes with it), and its ratio to the ceiling.

    make bench-delivery   # = .venv/bin/python -m loadtests.delivery --seconds 120 --backlog 1000000

`--batches` then counts the record batches stored per topic, which the embedded broker's fetch
cost grows with (`batches.py`).

`--provider-cap N` runs it against a provider that throttles: the carrier-sim takes N sends/s
and answers 429 beyond (with `--no-retry-after`, a 429 naming no wait, as WhatsApp's 130429),
Herald not told. The ceiling is then that cap (no `wrk` run), and the figures say whether OTPs
still go first and how close to the provider's capacity the worker keeps itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from loadtests import batches, cpu, wrk
from loadtests.stack import bench_stack, require_wrk

SIM_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"to":"+4474%06d99","channel":"sms","body":"x"}', n % 999999))
end
"""


STORED_TOPICS = ["herald.messages.marketing", "herald.messages.utility", "herald.events"]

RANGE = {"update": "74", "promo": "75", "otp": "77"}  # UK mobile ranges: one per class, 1M numbers each


def messages(template: str, params: dict[str, str], start: int, n: int) -> list[dict[str, Any]]:
    """`n` messages to distinct recipients (numbered from `start`, ending in 99: clear of the
    carrier-sim's scripted outcomes)."""
    return [
        {"to": f"+44{RANGE[template]}{(start + i) % 1_000_000:06d}99", "channel": "sms",
         "template": {"name": template, "language": "en"}, "params": params}
        for i in range(n)
    ]  # fmt: skip


class Client:
    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.admin = {"authorization": f"Bearer {admin_token}"}
        self.session = aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=60))
        self.auth: dict[str, str] = {}

    async def setup(self) -> str:
        async with self.session.post("/v1/admin/tenants", headers=self.admin,
                                     json={"name": "Bench", "tier": "enterprise", "verified": True}) as r:  # fmt: skip
            tenant = (await r.json())["id"]
        # Throughput is the platform's here, not the tier's 1,000 msg/s.
        async with self.session.patch(f"/v1/admin/tenants/{tenant}", headers=self.admin,
                                      json={"rate_limit_per_second": 100_000}) as r:  # fmt: skip
            assert r.status == 200
        async with self.session.post(
            f"/v1/admin/tenants/{tenant}/keys", headers=self.admin, json={"kind": "live"}
        ) as r:
            self.auth = {"authorization": f"Bearer {(await r.json())['key']}"}
        for name, category, body in (
            ("otp", "authentication", "Your code is {{code}}"),
            ("update", "utility", "Your parcel {{ref}} is on its way"),
            ("promo", "marketing", "Winter sale: {{pct}} off"),
        ):
            template = {"name": name, "language": "en", "category": category, "channel": "sms", "body": body}
            async with self.session.post("/v1/templates", headers=self.auth, json=template) as r:
                assert r.status == 201, await r.text()
        return str(tenant)

    async def batch(self, messages: list[dict[str, Any]]) -> int:
        async with self.session.post("/v1/messages/batch", headers=self.auth, json={"messages": messages}) as r:
            assert r.status == 202, await r.text()
            return int((await r.json())["accepted"])

    async def send(self, message: dict[str, Any]) -> None:
        async with self.session.post("/v1/messages", headers=self.auth, json=message) as r:
            assert r.status == 202, await r.text()

    async def close(self) -> None:
        await self.session.close()


async def _count(conn: asyncpg.Connection, category: str, status: str | None = None) -> int:
    if status is None:
        return int(await conn.fetchval("SELECT count(*) FROM messages WHERE category = $1", category))
    return int(
        await conn.fetchval("SELECT count(*) FROM messages WHERE category = $1 AND status = $2", category, status)
    )


async def sustained(client: Client, dsn: str, seconds: int, warmup: int = 15) -> tuple[float, int, str]:
    """Delivered msg/s over `seconds` after `warmup`, with the queue kept fed; and where the CPU
    went in that window (per process group, per delivered message)."""
    conn = await asyncpg.connect(dsn)
    feeder_conn = await asyncpg.connect(dsn)  # one connection per task: asyncpg's are not shared
    accepted = 0
    stop = asyncio.Event()

    async def feed() -> None:
        # The count scans the whole messages table (millions of rows after a 1M backlog), so it
        # runs at most every 2 s: counted on every batch it cost Postgres ~100 µs per delivered
        # message of the load generator's own work.
        nonlocal accepted
        delivered, counted = 0, 0.0
        while not stop.is_set():
            if time.monotonic() - counted >= 2.0:
                delivered, counted = await _count(feeder_conn, "utility", "delivered"), time.monotonic()
            if accepted - delivered > 30_000:
                await asyncio.sleep(0.5)
                continue
            accepted += await client.batch(messages("update", {"ref": "X1"}, accepted, 1000))

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.sleep(warmup)
        # Every class counts: the rest of the marketing backlog fills whatever utility leaves.
        total = "SELECT count(*) FROM messages WHERE status = 'delivered'"
        start_count, started, cpu_before = int(await conn.fetchval(total)), time.monotonic(), cpu.snapshot()
        await asyncio.sleep(seconds)
        end_count, elapsed, cpu_after = int(await conn.fetchval(total)), time.monotonic() - started, cpu.snapshot()
    finally:
        stop.set()
        await feeder
        await conn.close()
        await feeder_conn.close()
    delivered = end_count - start_count
    return delivered / elapsed, accepted, cpu.report(cpu.spent(cpu_before, cpu_after), elapsed, delivered)


async def sent_count(conn: asyncpg.Connection, category: str) -> int:
    """Messages of `category` with a `sent` event (handed to the provider)."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM messages m JOIN message_events e ON e.message_id = m.id AND e.status = 'sent'"
        " WHERE m.category = $1", category,
    ))  # fmt: skip


async def until_count(
    count: Callable[[], Awaitable[int]], n: int, seconds: float, what: str, poll: float = 0.1
) -> float:
    """Until `count()` reaches `n` (failing after `seconds`, naming `what`); the seconds it took."""
    started = time.monotonic()
    while (done := await count()) < n:
        assert time.monotonic() - started < seconds, f"{done} of {n} {what} within {seconds:.0f} s"
        await asyncio.sleep(poll)
    return time.monotonic() - started


async def until_sent(conn: asyncpg.Connection, category: str, n: int, seconds: float) -> None:
    """Until `n` messages of `category` have been handed to the provider."""
    await until_count(lambda: sent_count(conn, category), n, seconds, f"{category} messages sent")


async def otp_latency(conn: asyncpg.Connection) -> dict[str, float]:
    """Accepted -> `sent` of every authentication message: p50, p99 and worst, in ms."""
    row = await conn.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e.at - m.created_at) AS p50,"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY e.at - m.created_at) AS p99,"
        " max(e.at - m.created_at) AS worst"
        " FROM messages m JOIN message_events e ON e.message_id = m.id AND e.status = 'sent'"
        " WHERE m.category = 'authentication'"
    )
    assert row is not None
    return {f"{k}_ms": row[k].total_seconds() * 1000 for k in ("p50", "p99", "worst")}


async def priority(client: Client, dsn: str, backlog: int, otp_seconds: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        # A worker still joining its consumer group would be measured as OTP latency (the `wrk`
        # ceiling run used to give it that time): first one probe goes through.
        await client.send(messages("update", {"ref": "probe"}, 999_999, 1)[0])
        await until_sent(conn, "utility", 1, seconds=60)
        return await _otps_behind(client, conn, backlog, otp_seconds)
    finally:
        await conn.close()


async def _otps_behind(client: Client, conn: asyncpg.Connection, backlog: int, otp_seconds: int) -> dict[str, float]:
    queued = 0
    while queued < backlog:
        sizes = [min(1000, backlog - queued - k * 1000) for k in range(4)]
        done = await asyncio.gather(
            *(client.batch(messages("promo", {"pct": "20%"}, queued + k * 1000, s))
              for k, s in enumerate(sizes) if s > 0)
        )  # fmt: skip
        queued += sum(done)
    queued_at = time.monotonic()
    sent = 0
    while time.monotonic() - queued_at < otp_seconds:
        await client.send(messages("otp", {"code": "424242"}, sent, 1)[0])
        sent += 1
        await asyncio.sleep(0.05)
    await until_sent(conn, "authentication", sent, seconds=120)
    marketing_left = backlog - await _count(conn, "marketing", "delivered")
    return {"otps": sent, **await otp_latency(conn), "marketing_left": marketing_left}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=120, help="sustained phase, after a 15 s warm-up")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="marketing messages queued before the OTPs")
    parser.add_argument("--otp-seconds", type=int, default=20)
    parser.add_argument("--provider-cap", type=int, default=0, help="the carrier-sim's sends/s, 429 beyond (0: none)")
    parser.add_argument("--no-retry-after", action="store_true", help="with --provider-cap: 429s name no wait")
    parser.add_argument(
        "--batches",
        action="store_true",
        help="then count the batches stored per topic (reads every record: minutes after a 1M backlog)",
    )
    args = parser.parse_args()
    if not args.provider_cap:
        require_wrk()  # only the ceiling run needs it; with a cap, the cap is the ceiling
    # Distinct recipients everywhere, so the 6 s per-recipient gap is not what is measured.
    os.environ.setdefault("HERALD_LOG_LEVEL", "WARNING")
    # The ceiling run sends straight to the carrier-sim, which posts ~50,000 receipts to Herald for
    # sends Herald never made: set aside as unmatched after 10 s (not 10 min) so the sinks' sweep
    # stops reading them before the measured phases, as it would after a real flood.
    os.environ.setdefault("HERALD_SINKS_RECEIPT_UNMATCHED_AFTER_SECONDS", "10")
    if args.provider_cap:  # the children inherit the environment
        os.environ["HERALD_CARRIER_SIM_MAX_PER_SECOND"] = str(args.provider_cap)
        os.environ["HERALD_CARRIER_SIM_THROTTLE_RETRY_AFTER"] = "false" if args.no_retry_after else "true"
    with tempfile.TemporaryDirectory() as tmp, bench_stack(Path(tmp)) as stack:
        if args.provider_cap:
            ceiling_rps = float(args.provider_cap)
            print(f"ceiling: the carrier-sim's cap, {args.provider_cap:,} sends/s (429 beyond, "
                  f"{'no Retry-After' if args.no_retry_after else 'Retry-After: its next token'})")  # fmt: skip
        else:
            script = Path(tmp) / "sim.lua"
            script.write_text(SIM_SCRIPT)
            ceiling_rps = wrk.run(f"{stack.sim_url}/v1/messages", script, 10, 32).rps
            print(f"ceiling: carrier-sim alone (wrk, 32 connections): {ceiling_rps:,.0f} sends/s")

        async def measure() -> None:
            client = Client(stack.api_url, stack.admin_token)
            try:
                await client.setup()
                p = await priority(client, stack.database_url, args.backlog, args.otp_seconds)
                print(f"priority: {p['otps']:.0f} OTPs behind a {args.backlog:,}-message marketing backlog: "
                      f"accepted -> sent p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms, "
                      f"worst {p['worst_ms']:.0f} ms; marketing still queued at the end: "
                      f"{p['marketing_left']:,.0f}")  # fmt: skip
                rate, accepted, cpu_report = await sustained(client, stack.database_url, args.seconds)
                print(f"sustained: {rate:,.0f} msg/s accepted -> delivered over {args.seconds} s "
                      f"({accepted:,} accepted); ratio to the carrier-sim ceiling "
                      f"{rate / ceiling_rps:.2f}")  # fmt: skip
                print(f"CPU in the sustained window, by process:\n{cpu_report}")
                if args.batches:
                    stored = await batches.report(stack.bootstrap, STORED_TOPICS)
                    print(f"stored on the broker at the end (its fetch cost grows with batches):\n{stored}")
            finally:
                await client.close()

        asyncio.run(measure())


if __name__ == "__main__":
    main()
