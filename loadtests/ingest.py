"""Ingestion benchmark (issue #3) with its ceilings, all measured in one run on this machine.

1. ceiling A: a bare Litestar + msgspec 202 endpoint (loadtests/bare_app.py), same server settings;
2. single:    `herald api` POST /v1/messages (auth, template, phonenumbers, render, produce acks=all);
3. ceiling B: raw aiokafka production of the same records to the same broker, enqueue-all then
              await-all (what `Producer.send_many` does), one process;
4. batch:     `herald api` POST /v1/messages/batch with 1,000 messages per request.

Only the API runs (plus the embedded database and broker): workers would compete for the same
two cores and this measures ingestion. `wrk` is the client (an httpx client was the bottleneck).

    make bench-ingest   # = .venv/bin/python -m loadtests.ingest --seconds 10

`--profile DIR` runs py-spy (blocking mode) on the API over the single and the every-recipient-new
batch phases (`loadtests/profile.py`) and prints where its CPU went; that run's figures are slowed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.records import ENCODER, OutboundMessage
from herald.embedded import free_port, wait_for_port
from herald.ids import uuid7
from herald.sealing import seal
from loadtests import cpu, profile, wrk
from loadtests.e2e import WRK_SCRIPT, setup_tenant
from loadtests.stack import bench_stack
from loadtests.wrk import WrkResult

ROOT = Path(__file__).resolve().parents[1]


def bare_ceiling(seconds: int, connections: int, tmp: Path) -> WrkResult:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "loadtests.bare_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        wait_for_port(port, 20, alive=lambda: server.poll() is None)
        script = tmp / "bare.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"to":"+447400100010","channel":"sms","template":{"name":"otp","language":"en"},'
            '"params":{"code":"1"}}\'\n'
        )
        return wrk.run(f"http://127.0.0.1:{port}/v1/messages", script, seconds, connections)
    finally:
        server.terminate()
        server.wait(10)


async def raw_produce(bootstrap: str, records: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=64 * 1024)
    await producer.start()
    sample = OutboundMessage(
        id=uuid7(),
        tenant_id=uuid7(),
        key_kind="live",
        channel="sms",
        category="authentication",  # type: ignore[arg-type]
        template_name="otp",
        template_language="en",
        template_version=1,
        to="+447400100010",
        country="GB",
        body="Your code is 123456",
        created_at_ms=0,
        expires_at_ms=0,
    )
    value = ENCODER.encode(seal(AESGCM(bytes(32)), 0, sample))  # the size of a real record
    try:
        started = time.perf_counter()
        for start in range(0, records, 1000):
            futures = [
                await producer.send("herald.messages.authentication", value=value, key=f"k{i}".encode())
                for i in range(start, min(records, start + 1000))
            ]
            await asyncio.gather(*futures)
        return records / (time.perf_counter() - started)
    finally:
        await producer.stop()


def batch_script(key: str, tmp: Path) -> Path:
    items = [
        {
            "to": f"+4474001{10 + i:05d}",
            "channel": "sms",
            "template": {"name": "otp", "language": "en"},
            "params": {"code": str(i)},
        }
        for i in range(1000)
    ]
    script = tmp / "batch.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\nwrk.body = [[{json.dumps({"messages": items})}]]\n'
    )
    return script


BATCH_DISTINCT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local n = 0
request = function()
  local items = {}
  for i = 1, 1000 do
    n = n + 1
    items[i] = string.format('{"to":"+447400%%06d","channel":"sms","template":{"name":"otp","language":"en"},'
      .. '"params":{"code":"%%d"}}', n %% 1000000, n)
  end
  return wrk.format(nil, nil, nil, '{"messages":[' .. table.concat(items, ",") .. ']}')
end
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", default=None, help="a directory for py-spy profiles of the API")
    args = parser.parse_args()
    files: list[Path] = []

    @contextlib.contextmanager
    def profiled(phase: str) -> Iterator[None]:
        if args.profile is None:
            yield
            return
        api = {pid: group for pid, (group, _) in cpu.snapshot().items() if group == "api"}
        # Blocking: under uvloop only its shares are right; the profiled run's figures are slowed.
        with profile.record(api, args.seconds, Path(args.profile) / phase, blocking=True) as written:
            yield
        files.extend(written)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare = bare_ceiling(args.seconds, args.connections, tmp)
        with bench_stack(tmp, children=("api",)) as stack:
            key = setup_tenant(stack.api_url, stack.admin_token)
            (tmp / "single.lua").write_text(WRK_SCRIPT % key)
            with profiled("single"):
                single = wrk.run(f"{stack.api_url}/v1/messages", tmp / "single.lua", args.seconds, args.connections)
            raw = asyncio.run(raw_produce(stack.bootstrap, 100_000))
            batch = wrk.run(f"{stack.api_url}/v1/messages/batch", batch_script(key, tmp), args.seconds, 4)
            (tmp / "distinct.lua").write_text(BATCH_DISTINCT % key)
            with profiled("distinct"):
                distinct = wrk.run(f"{stack.api_url}/v1/messages/batch", tmp / "distinct.lua", args.seconds, 4)
    batch_mps, distinct_mps = batch.rps * 1000, distinct.rps * 1000
    print(
        f"ceiling A  bare Litestar 202         {bare.rps:>9,.0f} req/s  "
        f"p50 {bare.p50_ms:.1f} ms  p99 {bare.p99_ms:.1f} ms"
    )
    print(
        f"single     POST /v1/messages          {single.rps:>9,.0f} req/s  p50 {single.p50_ms:.1f} ms  "
        f"p99 {single.p99_ms:.1f} ms  ratio {single.rps / bare.rps:.2f} (target 0.6)"
    )
    print(f"ceiling B  raw aiokafka produce      {raw:>9,.0f} msg/s")
    print(
        f"batch      POST /v1/messages/batch    {batch_mps:>9,.0f} msg/s  ({batch.rps:.1f} req/s of 1,000; "
        f"p50 {batch.p50_ms:.0f} ms)  ratio {batch_mps / raw:.2f} (target 0.5)  [same 1,000 recipients each request]"
    )
    print(
        f"batch      POST /v1/messages/batch    {distinct_mps:>9,.0f} msg/s  ({distinct.rps:.1f} req/s of 1,000; "
        f"p50 {distinct.p50_ms:.0f} ms)  ratio {distinct_mps / raw:.2f} (target 0.5)  [every recipient new]"
    )
    for written in files:
        print(f"\n{written.parent.name}: {profile.summary(written)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
