"""SMS end to end over SMPP, and failover to the HTTP aggregator, the whole platform as `make run`
starts it on one machine (the SMSC and the aggregator played by their doubles).

  * ceiling: an SMPP client (`smpp34`, the binds and window Herald uses) submitting straight to
    the SMSC double, receipts requested: what the double alone takes on this machine;
  * Herald: --messages sms accepted in batches of 1,000 (one tenant, its pacing lifted), then,
    from the database, the drain rate (first accept to last `delivered`, receipts bound) and
    accepted -> delivered per message; the ratio of the drain rate to the ceiling;
  * --failover: a steady --rate of sms, the SMSC taken down mid-flow; the time from the outage to
    the first message the aggregator took, and to the fallback carrying the flow, then whether
    every message was delivered once.

    make bench-sms            # or: .venv/bin/python -m loadtests.sms --messages 20000
    .venv/bin/python -m loadtests.sms --failover
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import smpp34

from loadtests.figures import reached
from loadtests.stack import bench_stack
from loadtests.tenants import send_batches, unpaced_tenant

TEMPLATE = {"name": "notice", "language": "en", "category": "utility", "channel": "sms",
            "body": "Your parcel {{ref}} arrives today"}  # fmt: skip


async def ceiling(smpp_port: int, system_id: str, seconds: float, binds: int, window: int) -> float:
    """submit_sm/s the SMSC double takes from `binds` sessions of `window` outstanding each."""
    clients = [smpp34.Client(host="127.0.0.1", port=smpp_port, system_id=system_id, password="bench",
                             bind_type="TRX", window_size=window) for _ in range(binds)]  # fmt: skip
    sessions = [await c.connect() for c in clients]
    done = 0
    stop_at = time.monotonic() + seconds

    async def lane(smsc: smpp34.Smsc, lane_id: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            answer = await smsc.submit_sm(f"4474{lane_id:02d}{n % 1_000_000:06d}7", b"Your parcel A1 arrives today",
                                          source_addr="HERALD", registered_delivery=1)  # fmt: skip
            done += answer.is_success

    async def drain(smsc: smpp34.Smsc) -> None:  # the receipts, as Herald's binds read them
        while not isinstance(await smsc.next(), smpp34.Disconnected):
            pass

    readers = [asyncio.create_task(drain(s)) for s in sessions]
    started = time.monotonic()
    await asyncio.gather(*(lane(s, i * window + j) for i, s in enumerate(sessions) for j in range(window)))
    rate = done / (time.monotonic() - started)
    for s in sessions:
        await s.unbind()
    for r in readers:
        r.cancel()
    return rate


def setup(base: str, admin_token: str, binds: int, window: int) -> dict[str, str]:
    admin = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        auth = unpaced_tenant(http, admin_token)
        assert http.post("/v1/templates", headers=auth, json=TEMPLATE).status_code == 201
        smpp = http.get("/v1/admin/providers/smpp-main", headers=admin).json()
        smpp.update(binds=binds, window=window)
        for field in ("name", "has_secret"):
            smpp.pop(field)
        assert http.put("/v1/admin/providers/smpp-main", headers=admin, json=smpp).status_code == 200
    time.sleep(3)  # the workers apply it (every 2 s) and bind
    return auth


def notice(n: int) -> dict[str, Any]:
    return {"to": f"+4474{n % 10_000_000:07d}7", "channel": "sms", "template": {"name": "notice", "language": "en"},
            "params": {"ref": f"A{n}"}}  # fmt: skip


async def failover(base: str, auth: dict[str, str], smsc_url: str, dsn: str, rate: int, seconds: float) -> None:
    """A steady `rate` of sms; the SMSC goes down halfway. Prints the switch-over times."""
    sent = 0
    outage_at: datetime | None = None
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as http, \
            httpx.AsyncClient(base_url=smsc_url, timeout=10) as smsc:  # fmt: skip
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            if outage_at is None and elapsed >= seconds / 2:
                outage_at = datetime.now(UTC)
                await smsc.post("/_sim/faults", json={"outage": True})
            r = await http.post("/v1/messages", json={"to": f"+4475{sent:07d}7", "channel": "sms",
                                                      "template": {"name": "notice", "language": "en"},
                                                      "params": {"ref": f"F{sent}"}})  # fmt: skip
            assert r.status_code == 202, r.text
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        await smsc.post("/_sim/faults", json={"outage": False})
    assert outage_at is not None
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 300
        while (done := await conn.fetchval("SELECT count(*) FROM messages WHERE status = 'delivered'")) < sent:
            assert time.monotonic() < deadline, f"only {done}/{sent} delivered"
            await asyncio.sleep(0.5)
        first = await conn.fetchval(
            "SELECT min(sent_at) FROM provider_messages WHERE provider = 'sms:twilio-backup' AND sent_at >= $1",
            outage_at)  # fmt: skip
        # The fallback carries the flow: the first second after which it took at least 90% of the rate.
        per_second = await conn.fetch(
            "SELECT date_trunc('second', sent_at) AS s, count(*) AS n FROM provider_messages"
            " WHERE provider = 'sms:twilio-backup' AND sent_at >= $1 GROUP BY 1 ORDER BY 1", outage_at)  # fmt: skip
        carrying = next((r["s"] for r in per_second if r["n"] >= 0.9 * rate), None)
        twice = await conn.fetchval("SELECT count(*) FROM (SELECT message_id FROM provider_messages GROUP BY 1"
                                    " HAVING count(*) > 1) d")  # fmt: skip
        pinned = await conn.fetchval("SELECT count(*) FROM messages WHERE status <> 'delivered'")
    finally:
        await conn.close()
    print(f"failover: {sent} sms at {rate}/s, the SMSC down at {seconds / 2:.0f} s")
    print(f"  outage -> first sms taken by the fallback: {(first - outage_at).total_seconds() * 1000:,.0f} ms")
    if carrying is not None:
        print(f"  outage -> fallback carrying >= 90% of the flow: {(carrying - outage_at).total_seconds():.1f} s"
              " (whole seconds)")  # fmt: skip
    print(f"  delivered {sent}; sent by two providers: {twice}; not delivered: {pinned}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--ceiling-seconds", type=float, default=5)
    parser.add_argument("--binds", type=int, default=2)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, bench_stack(Path(tmp)) as stack:
        smsc = stack.settings.smsc_sim
        auth = setup(stack.api_url, stack.admin_token, args.binds, args.window)
        smsc_url = stack.sms_urls[0]
        if args.failover:
            asyncio.run(failover(stack.api_url, auth, smsc_url, stack.database_url, args.rate, args.seconds))
            return
        top = asyncio.run(ceiling(smsc.smpp_port, smsc.system_id, args.ceiling_seconds, args.binds, args.window))
        print(f"ceiling: the SMSC double alone takes {top:,.0f} submit_sm/s ({args.binds} binds x window "
              f"{args.window}, receipts requested)")  # fmt: skip
        accepted = asyncio.run(send_batches(stack.api_url, auth, range(args.messages), notice))
        print(f"accept: {args.messages} sms at {accepted:,.0f} msg/s (batches of 1,000)")
        delivered = asyncio.run(reached(stack.database_url, "delivered", args.messages))
        print(delivered.line("delivered"))
        print(f"ratio to the ceiling: {delivered.drain_per_second / top:.2f}")


if __name__ == "__main__":
    main()
