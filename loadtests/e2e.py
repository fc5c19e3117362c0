"""End-to-end figures for the spine, on the whole platform as `make run` starts it.

One run, one machine, everything sharing its cores (api, worker, sinks, carrier-sim, broker,
database and the load generator):
  * accept: `wrk` posts single messages for --seconds at --connections; req/s and latency;
  * delivery: from the database, accepted -> delivered latency per message and the drain rate
    (first accept to last delivered), once every accepted message is delivered.
Issues #3 and #4 add the ceilings (bare endpoint, raw produce) and the sustained benchmark.

    make bench-e2e            # or: .venv/bin/python -m loadtests.e2e --seconds 10 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx

from loadtests import wrk
from loadtests.figures import reached
from loadtests.stack import bench_stack, require_wrk
from loadtests.wrk import WrkResult

# Distinct recipients (+4474001xxxxx): one recipient's messages are delivered in order, one
# at a time, so a single-recipient load would measure that lane, not the platform.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"to":"+4474001%%05d","channel":"sms","template":{"name":"otp","language":"en"},'
    .. '"params":{"code":"%%d"}}', 10 + n %% 90000, n)
  return wrk.format(nil, nil, nil, body)
end
"""


def setup_tenant(base: str, admin_token: str) -> str:
    admin = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base, timeout=10) as http:
        tenant = http.post("/v1/admin/tenants", headers=admin, json={"name": "Bench", "tier": "enterprise",
                                                                      "verified": True}).json()  # fmt: skip
        key = http.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=admin, json={"kind": "live"}).json()["key"]
        template = {"name": "otp", "language": "en", "category": "authentication", "channel": "sms",
                    "body": "Your code is {{code}}"}  # fmt: skip
        assert http.post("/v1/templates", headers={"authorization": f"Bearer {key}"}, json=template).status_code == 201
    return str(key)


def run_wrk(url: str, key: str, seconds: int, connections: int, workdir: Path) -> WrkResult:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % key)
    return wrk.run(f"{url}/v1/messages", script, seconds, connections)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    require_wrk()
    with tempfile.TemporaryDirectory() as tmp, bench_stack(Path(tmp)) as stack:
        key = setup_tenant(stack.api_url, stack.admin_token)
        result = run_wrk(stack.api_url, key, args.seconds, args.connections, Path(tmp))
        requests = result.requests
        print(result.output)
        print(f"accept: {requests} messages, {requests / args.seconds:,.0f} req/s over {args.seconds}s "
              f"at {args.connections} connections (whole platform running)")  # fmt: skip
        print(asyncio.run(reached(stack.database_url, "delivered", requests)).line("delivered"))


if __name__ == "__main__":
    main()
