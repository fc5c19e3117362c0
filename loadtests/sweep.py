"""Many tenants (issue #27): the same traffic spread over N tenants, for several N in one run.

For each N, a fresh platform as `make run` starts it (so no N inherits another's tables):

1. N tenants through the admin API, each with its own live key, three templates and its tier's
   limits (standard and enterprise alternately; a tenant's rate is lifted only where its share
   of the traffic would exceed its tier's, which at N = 1 is the one tenant carrying it all;
   a standard tenant's daily recipient limit is kept but lifted out of a run's reach);
2. priority: a marketing backlog of --backlog messages, spread evenly over the tenants (batches
   of up to 1,000 each), then one-time passwords from random tenants at 20/s for --otp-seconds;
   accepted -> handed to the provider (`sent`) p50 / p99 / worst;
3. sustained: --clients concurrent clients, each picking a random tenant per request and sending
   as that tenant, singles and batches of --batch (--single-share of the messages as singles),
   once every earlier message has ended (the window is then steady: the clients stay within
   --outstanding undelivered of what they sent); after a warm-up, over --seconds: messages
   reaching `delivered`/s, CPU per delivered message by process, Herald's own (api + worker + sinks) as a ratio to the
   carrier double's (one HTTP exchange each way per message: the yardstick), database
   statements and transactions per message (pg_stat_statements, pg_stat_database), and broker
   requests per message by API (a counting proxy in front of the broker, `kafka_counter.py`).

sms go to the carrier double over HTTP (`--via carrier`, the yardstick's path) or over SMPP to the
SMSC double (`--via smpp`, what `make run` routes to).

    make bench-tenants   # = .venv/bin/python -m loadtests.sweep --tenants 1,100,1000,10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from herald.embedded import free_port, wait_for_port
from herald.embedded.broker import EmbeddedBroker
from herald_cli.dev import DevStack
from loadtests import cpu, delivery, profile
from loadtests.kafka_counter import KafkaCounter, counting
from loadtests.stack import bench_stack

HERALD = ("api", "worker", "sinks")
TIER_RATES = {"standard": 80, "enterprise": 1_000}
TEMPLATES = (
    ("otp", "authentication", "Your code is {{code}}"),
    ("update", "utility", "Your parcel {{ref}} is on its way"),
    ("promo", "marketing", "Winter sale: {{pct}} off"),
)
PARAMS = {"otp": {"code": "424242"}, "update": {"ref": "X1"}, "promo": {"pct": "20%"}}


@dataclass
class Numbers:
    """Distinct recipients per class (ending in 99: clear of the doubles' scripted outcomes)."""

    next: dict[str, int] = field(default_factory=lambda: dict.fromkeys(delivery.RANGE, 0))

    def messages(self, template: str, n: int) -> list[dict[str, Any]]:
        start, self.next[template] = self.next[template], self.next[template] + n
        return delivery.messages(template, PARAMS[template], start, n)


class Platform:
    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        self.admin = {"authorization": f"Bearer {stack.admin_token}"}
        self.http = aiohttp.ClientSession(
            base_url=stack.api_url, timeout=aiohttp.ClientTimeout(total=120),
            # An idle connection is dropped before uvicorn's keep-alive (5 s) closes it: a request
            # sent on one the server is closing is reset (aiohttp's default keeps them 15 s).
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=2.0),
        )  # fmt: skip
        self.tenants: list[dict[str, str]] = []
        """Each tenant's authorization header."""
        self.numbers = Numbers()

    async def call(self, method: str, path: str, headers: dict[str, str], body: Any, want: int) -> Any:
        async with self.http.request(method, path, headers=headers, json=body) as r:
            assert r.status == want, f"{method} {path}: {r.status} {(await r.text())[:300]}"
            return await r.json() if r.content_type.endswith("json") else None

    async def route_sms(self, via: str) -> None:
        if via == "carrier":
            await self.call("PUT", "/v1/admin/providers/carrier-sim", self.admin,
                            {"kind": "carrier", "endpoint": self.stack.sim_url}, 201)  # fmt: skip
            await self.call("PUT", "/v1/admin/routes", self.admin, {"country": "*", "providers": ["carrier-sim"]}, 200)

    async def tenant(self, index: int, rate_needed: float) -> None:
        tier = "enterprise" if index % 2 else "standard"
        t = await self.call("POST", "/v1/admin/tenants", self.admin,
                            {"name": f"Tenant {index}", "tier": tier, "verified": True}, 201)  # fmt: skip
        patch: dict[str, int] = {}
        if rate_needed > TIER_RATES[tier]:
            patch["rate_limit_per_second"] = math.ceil(rate_needed)
        if tier == "standard":
            # Still limited (admission counts each recipient), but a run never reaches the limit:
            # the tier's 100,000 a day is a backlog and a minute at one tenant.
            patch["daily_recipient_limit"] = 100_000_000
        if patch:
            await self.call("PATCH", f"/v1/admin/tenants/{t['id']}", self.admin, patch, 200)
        key = await self.call("POST", f"/v1/admin/tenants/{t['id']}/keys", self.admin, {"kind": "live"}, 201)
        auth = {"authorization": f"Bearer {key['key']}"}
        for name, category, body in TEMPLATES:
            template = {"name": name, "language": "en", "category": category, "channel": "sms", "body": body}
            await self.call("POST", "/v1/templates", auth, template, 201)
        self.tenants.append(auth)

    async def setup(self, n: int, total_rate: float) -> float:
        """`n` tenants, each allowed twice its share of `total_rate`; seconds it took."""
        started = time.monotonic()
        await _bounded((self.tenant(i, 2 * total_rate / n) for i in range(n)), 32)
        return time.monotonic() - started

    async def batch(self, auth: dict[str, str], messages: list[dict[str, Any]]) -> int:
        body = await self.call("POST", "/v1/messages/batch", auth, {"messages": messages}, 202)
        return int(body["accepted"])

    async def single(self, auth: dict[str, str], message: dict[str, Any]) -> None:
        await self.call("POST", "/v1/messages", auth, message, 202)


async def _bounded(jobs: Any, limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(job: Any) -> None:
        async with gate:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def priority(p: Platform, conn: asyncpg.Connection, backlog: int, otp_seconds: int) -> dict[str, float]:
    """OTPs from random tenants behind a marketing backlog spread over every tenant."""
    share, extra = divmod(backlog, len(p.tenants))
    jobs = []
    for i, auth in enumerate(p.tenants):
        mine = share + (1 if i < extra else 0)
        for start in range(0, mine, 1000):
            jobs.append(p.batch(auth, p.numbers.messages("promo", min(1000, mine - start))))
    await _bounded(jobs, 8)
    rng = random.Random(7)
    sent, queued_at = 0, time.monotonic()
    while time.monotonic() - queued_at < otp_seconds:
        await p.single(rng.choice(p.tenants), p.numbers.messages("otp", 1)[0])
        sent += 1
        await asyncio.sleep(0.05)
    await delivery.until_sent(conn, "authentication", sent, seconds=120)
    left = backlog - await delivery.sent_count(conn, "marketing")
    return {"otps": sent, **await delivery.otp_latency(conn), "marketing_left": left}


async def _db_counters(conn: asyncpg.Connection) -> tuple[int, int]:
    """(statements executed, transactions committed) in the herald database so far."""
    statements = await conn.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE d.datname = current_database()"
    )
    commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return int(statements), int(commits)


@dataclass
class Sustained:
    rate: float
    delivered: int
    accepted: int
    """In the window: about as many as delivered when the window is steady."""
    cpu: dict[str, float]
    elapsed: float
    statements: int
    commits: int
    broker: dict[str, int]


async def sustained(p: Platform, dsn: str, counter: KafkaCounter, args: argparse.Namespace, earlier: int) -> Sustained:
    """`earlier`: the messages the previous phases sent (the window opens once they have ended)."""
    conn, feeder_conn = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    stop = asyncio.Event()
    files: list[Path] = []
    state = {"accepted": 0, "delivered": 0}
    singles_per_batch = args.batch * args.single_share / (1 - args.single_share)
    single_odds = singles_per_batch / (singles_per_batch + 1)
    delivered_sql = "SELECT count(*) FROM messages WHERE status = 'delivered'"
    # The window is steady only once the priority phase's backlog is delivered: until then the
    # platform delivers more than the clients send, and the clients would run ahead of it.
    # Counted by what reached a final status: a message the sinks have not projected yet is not
    # in the table at all, so "none left in accepted" would not mean drained.
    final = "SELECT count(*) FROM messages WHERE status IN ('delivered', 'failed', 'expired')"
    took = await delivery.until_count(
        lambda: conn.fetchval(final), earlier, 600, "earlier messages in a final status", poll=2.0
    )
    base = int(await conn.fetchval(delivered_sql))
    print(f"window opens after {took:.0f} s of draining: {base:,} delivered of {earlier:,}")

    async def watch() -> None:
        # Counting scans the table: every 2 s, as delivery.py does.
        while not stop.is_set():
            state["delivered"] = int(await feeder_conn.fetchval(delivered_sql)) - base
            await asyncio.sleep(2.0)

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            if state["accepted"] - state["delivered"] > args.outstanding:
                await asyncio.sleep(0.2)
                continue
            auth = rng.choice(p.tenants)
            if rng.random() < single_odds:
                await p.single(auth, p.numbers.messages("update", 1)[0])
                state["accepted"] += 1
            else:
                # Not `state["accepted"] += await ...`: that reads the count before the await and
                # writes it back after, losing what other clients added meanwhile.
                accepted = await p.batch(auth, p.numbers.messages("update", args.batch))
                state["accepted"] += accepted

    tasks = [asyncio.create_task(watch()), *(asyncio.create_task(client(s)) for s in range(args.clients))]
    try:
        await asyncio.sleep(args.warmup)
        d0, t0, c0 = int(await conn.fetchval(delivered_sql)), time.monotonic(), cpu.snapshot()
        a0 = state["accepted"]
        print(f"after the warm-up: {a0:,} accepted, {state['delivered']:,} delivered")
        db0, k0 = await _db_counters(conn), counter.snapshot()
        with contextlib.ExitStack() as spying:
            if args.profile:
                herald = {pid: group for pid, (group, _) in c0.items() if group in HERALD}
                out = Path(args.profile) / f"{len(p.tenants)}-tenants"
                files = spying.enter_context(profile.record(herald, args.seconds, out, blocking=args.profile_blocking))
            await asyncio.sleep(args.seconds)
            d1, t1, c1 = int(await conn.fetchval(delivered_sql)), time.monotonic(), cpu.snapshot()
            a1 = state["accepted"]
            db1, k1 = await _db_counters(conn), counter.snapshot()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await conn.close()
        await feeder_conn.close()
    delivered = d1 - d0
    if args.profile:
        print("\n".join(profile.summary(f) for f in files))
    return Sustained(
        rate=delivered / (t1 - t0), delivered=delivered, accepted=a1 - a0,
        cpu=cpu.spent(c0, c1), elapsed=t1 - t0, statements=db1[0] - db0[0], commits=db1[1] - db0[1],
        broker={k: v - k0.get(k, 0) for k, v in k1.items() if v - k0.get(k, 0)},
    )  # fmt: skip


def _per(value: float, n: int) -> float:
    return value / n if n else float("nan")


def report(n: int, setup: float, pri: dict[str, float], s: Sustained) -> dict[str, float]:
    herald = sum(s.cpu.get(g, 0.0) for g in HERALD)
    yardstick = s.cpu.get("carrier-sim", 0.0)
    figures = {
        "tenants": n, "rate": s.rate, "herald_us": _per(herald, s.delivered) * 1e6,
        "yardstick_us": _per(yardstick, s.delivered) * 1e6,
        "statements": _per(s.statements, s.delivered), "commits": _per(s.commits, s.delivered),
        "broker": _per(sum(s.broker.values()), s.delivered), **{f"otp_{k}": v for k, v in pri.items()},
    }  # fmt: skip
    print(f"\n=== {n:,} tenants (set up in {setup:.0f} s) ===")
    print(f"priority: {pri['otps']:.0f} OTPs behind the marketing backlog: accepted -> sent "
          f"p50 {pri['p50_ms']:.0f} ms, p99 {pri['p99_ms']:.0f} ms, worst {pri['worst_ms']:.0f} ms; "
          f"marketing not yet sent: {pri['marketing_left']:,.0f}")  # fmt: skip
    print(f"sustained: {s.rate:,.0f} msg/s delivered over {s.elapsed:.0f} s ({s.accepted:,} accepted in it)")
    print(f"CPU in the window, by process:\n{cpu.report(s.cpu, s.elapsed, s.delivered)}")
    if yardstick:
        ratio = figures["herald_us"] / figures["yardstick_us"]
        print(f"Herald's own (api + worker + sinks): {figures['herald_us']:.0f} µs/message, "
              f"{ratio:.2f}x the carrier double's {figures['yardstick_us']:.0f}")  # fmt: skip
    print(f"database: {figures['statements']:.2f} statements, {figures['commits']:.2f} transactions per message")
    broker = ", ".join(f"{k} {_per(v, s.delivered):.3f}" for k, v in sorted(s.broker.items(), key=lambda kv: -kv[1]))
    print(f"broker: {figures['broker']:.3f} requests per message ({broker})")
    return figures


def run_one(n: int, args: argparse.Namespace) -> dict[str, float]:
    with contextlib.ExitStack() as cleanup:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=args.keep, prefix=f"sweep-{n}-")
        if not args.keep:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        broker_port, proxy_port = free_port(), free_port()
        broker = EmbeddedBroker(broker_port, Path(tmp) / "broker.log", advertised_port=proxy_port)
        broker.start()
        try:
            with counting(proxy_port, broker_port) as counter:
                wait_for_port(proxy_port, 10)
                with bench_stack(Path(tmp), bootstrap=broker.bootstrap) as stack:

                    async def measure() -> dict[str, float]:
                        p = Platform(stack)
                        conn = await asyncpg.connect(stack.database_url)
                        try:
                            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                            await p.route_sms(args.via)
                            setup = await p.setup(n, args.rate_per_tenant_basis)
                            await asyncio.sleep(3)  # the workers' sms configuration refresh (2 s)
                            pri = await priority(p, conn, args.backlog, args.otp_seconds)
                            earlier = args.backlog + int(pri["otps"])
                            s = await sustained(p, stack.database_url, counter, args, earlier)
                            rows = await conn.fetch("SELECT status, count(*) AS n FROM messages GROUP BY status")
                            print("statuses at the end:", ", ".join(f"{r['status']} {r['n']:,}" for r in rows))
                            return report(n, setup, pri, s)
                        finally:
                            await conn.close()
                            await p.http.close()

                    figures = asyncio.run(measure())
                    if args.keep:
                        print(f"logs kept in {tmp}/logs")
                    return figures
        finally:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", default="1,100,1000,10000", help="comma-separated tenant counts")
    parser.add_argument("--via", choices=("carrier", "smpp"), default="carrier")
    parser.add_argument("--seconds", type=int, default=60, help="sustained window, after --warmup")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--backlog", type=int, default=100_000, help="marketing queued before the OTPs")
    parser.add_argument("--otp-seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the sustained phase")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch request")
    parser.add_argument("--single-share", type=float, default=0.2, help="share of messages sent one per request")
    parser.add_argument("--outstanding", type=int, default=3_000,
                        help="accepted, not delivered, at most (the window stays steady)")  # fmt: skip
    parser.add_argument("--rate-per-tenant-basis", type=float, default=5_000,
                        help="total msg/s for tenants' shares (each's rate: twice its share)")  # fmt: skip
    parser.add_argument("--profile", default=None,
                        help="a directory for py-spy profiles of api, worker and sinks over the window")  # fmt: skip
    parser.add_argument("--profile-blocking", action="store_true",
                        help="py-spy pauses each process per sample: right shares, slowed figures")  # fmt: skip
    parser.add_argument("--keep", default=None, help="a directory to keep each run's data and logs in")
    args = parser.parse_args()
    os.environ.setdefault("HERALD_LOG_LEVEL", "WARNING")
    rows = [run_one(int(n), args) for n in args.tenants.split(",")]
    base = rows[0]
    # "vs first" twice: as measured, and with each row's cost in units of its own carrier double,
    # the same fixed work per message in every row (on a shared VM it moves by a third between
    # rows of one run, and the raw ratio with it).
    print("\n| tenants | delivered msg/s | Herald µs/msg (x carrier double) | vs first | vs first, by double | "
          "statements/msg | transactions/msg | broker requests/msg | OTP p50 / p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    base_ratio = base["herald_us"] / base["yardstick_us"] if base["yardstick_us"] else float("nan")
    for r in rows:
        ratio = r["herald_us"] / r["yardstick_us"] if r["yardstick_us"] else float("nan")
        print(f"| {r['tenants']:,.0f} | {r['rate']:,.0f} | {r['herald_us']:.0f} ({ratio:.2f}) | "
              f"{r['herald_us'] / base['herald_us']:.2f} | {ratio / base_ratio:.2f} | {r['statements']:.2f} | "
              f"{r['commits']:.2f} | {r['broker']:.3f} | {r['otp_p50_ms']:.0f} / {r['otp_p99_ms']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
