"""WhatsApp end to end: accepted -> read in Postgres, through a tenant's own account on the double
of Meta's Cloud API, the whole platform as `make run` starts it on one machine.

  * ceiling: `wrk` posting template sends straight to the double (an account with no webhook
    subscribed, so it posts no statuses to Herald): what the double alone takes on this machine;
  * Herald: --messages whatsapp messages accepted in batches of 1,000, then, from the database,
    the drain rate (first accept to last `read`) and accepted -> read per message; the ratio of
    the drain rate to the ceiling.

The tenant's account has four numbers at Meta's highest throughput (1,000 msg/s each) and its
own rate limit lifted, so neither the numbers' gates nor the tenant's tier is what is measured.

    make bench-whatsapp       # or: .venv/bin/python -m loadtests.whatsapp --messages 10000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from loadtests import wrk
from loadtests.figures import reached
from loadtests.stack import bench_stack, require_wrk
from loadtests.tenants import send_batches, unpaced_tenant

SEND_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"messaging_product":"whatsapp","to":"4474%%07d7","type":"template",'
    .. '"template":{"name":"flight_update","language":{"code":"en_US"},"components":[{"type":"body",'
    .. '"parameters":[{"type":"text","text":"BA117"},{"type":"text","text":"10:40"}]}]},'
    .. '"biz_opaque_callback_data":"%%d"}', n %% 9000000, n)
  return wrk.format(nil, nil, nil, body)
end
"""
BODY = "Flight {{flight}} now leaves at {{time}}"


def meta_account(meta: httpx.Client, numbers: int, throughput: int) -> dict[str, object]:
    made = meta.post("/_sim/accounts", json={"display_name": "Bench", "numbers": numbers, "throughput": throughput})
    assert made.status_code == 201, made.text
    return dict(made.json())


def ceiling(meta_url: str, seconds: int, connections: int, workdir: Path) -> float:
    """Template sends per second the double alone takes (its own account, no webhook)."""
    with httpx.Client(base_url=meta_url, timeout=10) as meta:
        account = meta_account(meta, 1, 1_000_000)
        # The template must exist and be approved at Meta for its sends to be taken.
        template = {"name": "flight_update", "language": "en_US", "category": "UTILITY",
                    "components": [{"type": "BODY", "text": "Flight {{1}} now leaves at {{2}}",
                                    "example": {"body_text": [["BA117", "10:40"]]}}]}  # fmt: skip
        token = {"authorization": f"Bearer {account['access_token']}"}
        assert meta.post(f"/v21.0/{account['waba_id']}/message_templates", json=template, headers=token).is_success
        time.sleep(1.0)  # Meta's review (review_delay_ms)
    number = account["phone_numbers"][0]["id"]  # type: ignore[index]
    script = workdir / "meta.lua"
    script.write_text(SEND_SCRIPT % account["access_token"])
    result = wrk.run(f"{meta_url}/v21.0/{number}/messages", script, seconds, connections)
    return result.requests / seconds


def connect(base: str, admin_token: str, meta_url: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http, httpx.Client(base_url=meta_url, timeout=10) as meta:
        auth = unpaced_tenant(http, admin_token)
        account = meta_account(meta, 4, 1000)
        connected = http.put("/v1/whatsapp/account", headers=auth, json={
            "waba_id": account["waba_id"], "display_name": "Bench", "access_token": account["access_token"],
            "app_secret": account["app_secret"], "verify_token": "bench-verify-token",
            "phone_numbers": [{"id": n["id"], "throughput": 1000} for n in account["phone_numbers"]],  # type: ignore[attr-defined]
        })  # fmt: skip
        assert connected.status_code == 200, connected.text
        hook = {"url": f"{base}/v1/providers/whatsapp/webhook", "verify_token": "bench-verify-token"}
        assert meta.post(f"/_sim/accounts/{account['waba_id']}/webhook", json=hook).status_code == 200
        template = {"name": "flight_update", "language": "en_US", "category": "utility", "channel": "whatsapp",
                    "body": BODY, "whatsapp": {"examples": {"flight": "BA117", "time": "10:40"}}}  # fmt: skip
        assert http.post("/v1/templates", headers=auth, json=template).status_code == 201
        deadline = time.monotonic() + 30
        while http.get("/v1/templates/flight_update/en_US", headers=auth).json()["status"] != "approved":
            assert time.monotonic() < deadline, "Meta's approval did not reach Herald"
            time.sleep(0.2)
    return auth


def flight_update(n: int) -> dict[str, Any]:
    return {"to": f"+447400{n % 100_000:05d}7", "channel": "whatsapp",
            "template": {"name": "flight_update", "language": "en_US"},
            "params": {"flight": f"BA{n % 1000}", "time": "10:40"}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--ceiling-seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    require_wrk()
    with tempfile.TemporaryDirectory() as tmp, bench_stack(Path(tmp)) as stack:
        top = ceiling(stack.whatsapp_url, args.ceiling_seconds, args.connections, Path(tmp))
        print(f"ceiling: the double alone takes {top:,.0f} template sends/s ({args.connections} connections)")
        auth = connect(stack.api_url, stack.admin_token, stack.whatsapp_url)
        accepted = asyncio.run(send_batches(stack.api_url, auth, range(args.messages), flight_update))
        print(f"accept: {args.messages} whatsapp messages at {accepted:,.0f} msg/s (batches of 1,000)")
        read = asyncio.run(reached(stack.database_url, "read", args.messages))
        print(read.line("read"))
        print(f"ratio to the ceiling: {read.drain_per_second / top:.2f}")


if __name__ == "__main__":
    main()
