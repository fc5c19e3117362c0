"""The tenant a channel benchmark sends as, and how it sends: shared by bench-sms, -email, -whatsapp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx


def unpaced_tenant(http: httpx.Client, admin_token: str) -> dict[str, str]:
    """A verified enterprise tenant with a live key (its authorization header). Herald's own
    pacing of it (1,000 msg/s for enterprise) is lifted: the platform is measured, not the tier."""
    admin = {"authorization": f"Bearer {admin_token}"}
    tenant = http.post("/v1/admin/tenants", headers=admin,
                       json={"name": "Bench", "tier": "enterprise", "verified": True}).json()  # fmt: skip
    lifted = http.patch(f"/v1/admin/tenants/{tenant['id']}", headers=admin, json={"rate_limit_per_second": 100_000})
    assert lifted.status_code == 200, lifted.text
    key = http.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=admin, json={"kind": "live"}).json()["key"]
    return {"authorization": f"Bearer {key}"}


async def send_batches(
    base: str, auth: dict[str, str], numbers: range, item: Callable[[int], dict[str, Any]]
) -> float:
    """Accept `item(n)` for every n in `numbers`, in batches of 1,000 (eight in flight); the accept rate."""
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=auth) as http:
        gate = asyncio.Semaphore(8)

        async def batch(start: int) -> None:
            items = [item(n) for n in range(start, min(start + 1000, numbers.stop))]
            async with gate:
                r = await http.post("/v1/messages/batch", json={"messages": items})
            assert r.json()["accepted"] == len(items), r.text[:500]

        started = time.monotonic()
        await asyncio.gather(*(batch(s) for s in range(numbers.start, numbers.stop, 1000)))
        return len(numbers) / (time.monotonic() - started)
