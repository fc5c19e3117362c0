"""Email end to end over SMTP, the whole platform as `make run` starts it on one machine (the
relay and the DNS zone played by `herald mail-sim`).

  * ceiling: an SMTP client (`aiosmtplib`, as many connections as a worker keeps) handing a
    signed mail of the same size straight to the relay double: what the double alone takes;
  * Herald: a tenant with a verified identity sends --messages marketing mails in batches of
    1,000 (its pacing lifted); from the database, the drain rate (first accept to last
    `delivered`, which is the relay's delivery report coming back) and accepted -> delivered;
    the ratio of the drain rate to the ceiling.

    make bench-email          # or: .venv/bin/python -m loadtests.email --messages 5000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

from loadtests.figures import reached
from loadtests.stack import bench_stack
from loadtests.tenants import send_batches, unpaced_tenant

SENDER = "news@mail.bench.example"
TEMPLATE = {
    "name": "weekly", "language": "en", "category": "marketing", "channel": "email",
    "body": "Hi {{name}}, this week's offers are in.",
    "email": {"subject": "{{name}}, this week's offers",
              "html": "<p>Hi <b>{{name}}</b>, this week's offers are in.</p>"},
}  # fmt: skip


async def ceiling(smtp_port: int, seconds: float, connections: int, size: int) -> float:
    """Mails per second the relay double takes over `connections` connections, one mail at a time
    on each (as Herald's worker sends), of `size` bytes."""
    body = (b"Subject: bench\r\nMessage-ID: <%d@bench>\r\n\r\n" + b"x" * 76 + b"\r\n") * max(1, size // 80)
    done = 0
    stop_at = time.monotonic() + seconds

    async def lane(lane_id: int) -> None:
        nonlocal done
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=30, start_tls=False)
        async with client:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                await client.mail(f"bounces+{lane_id}@mail.bench.example")
                await client.rcpt(f"reader{lane_id}x{n}@example.org")
                await client.data(body.replace(b"%d", f"{lane_id}.{n}".encode(), 1))
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(lane(i) for i in range(connections)))
    return done / (time.monotonic() - started)


def setup(base: str, admin_token: str, relay: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http:
        auth = unpaced_tenant(http, admin_token)
        identity = http.put("/v1/email/identities", headers=auth, json={"from_address": SENDER}).json()
        (record,) = identity["dns_records"]
        published = httpx.put(f"{relay}/_sim/dns", json={"name": record["name"], "value": record["value"]})
        assert published.status_code == 204
        assert http.post(f"/v1/email/identities/{SENDER}/verify", headers=auth).json()["status"] == "verified"
        assert http.post("/v1/templates", headers=auth, json=TEMPLATE).status_code == 201
    return auth


def mail(n: int) -> dict[str, Any]:
    return {"to": f"reader{n}@example.org", "channel": "email", "template": {"name": "weekly", "language": "en"},
            "params": {"name": f"Reader {n}"}}  # fmt: skip


async def mail_size(relay: str) -> int:
    async with httpx.AsyncClient(base_url=relay, timeout=10) as http:
        (mail,) = (await http.get("/_sim/mails", params={"limit": 1})).json()
        return len(mail["raw"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--ceiling-seconds", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, bench_stack(Path(tmp)) as stack:
        relay = f"http://127.0.0.1:{stack.settings.mail_sim.port}"
        auth = setup(stack.api_url, stack.admin_token, relay)
        accepted = asyncio.run(send_batches(stack.api_url, auth, range(args.messages), mail))
        print(f"accept: {args.messages} mails at {accepted:,.0f} msg/s (batches of 1,000)")
        delivered = asyncio.run(reached(stack.database_url, "delivered", args.messages))
        print(delivered.line("delivered"))
        size = asyncio.run(mail_size(relay))
        connections = stack.settings.email.smtp_connections
        top = asyncio.run(ceiling(stack.settings.mail_sim.smtp_port, args.ceiling_seconds, connections, size))
        print(f"ceiling: the relay double alone takes {top:,.0f} mails/s ({connections} connections,"
              f" {size:,} bytes each)")  # fmt: skip
        print(f"ratio to the ceiling: {delivered.drain_per_second / top:.2f}")


if __name__ == "__main__":
    main()
