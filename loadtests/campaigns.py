"""Campaign ingestion benchmark (issue #25): `PUT /v1/campaigns/{id}/recipients` of a large CSV file.

The API alone (`herald api` on the embedded PostgreSQL and broker, as `make run` starts them).
A CSV of --rows rows (`to,name,pct,reference`, one row in a thousand invalid) is written to disk
and uploaded, streamed; the figure is rows/s from the first byte sent to the answer (every row
validated, sealed and stored, the refused ones recorded), and the API process's peak RSS while
it ingests, sampled every 0.1 s. The same upload of a file a tenth the size comes first: memory
flat in the file's size means the two peaks agree. The ceiling, measured in the same run, is
the batch API's rate for the same rows (`POST /v1/messages/batch`, 1,000 new recipients a
request, 8 in flight): the target is a ratio of at least 1.

    make bench-campaigns   # = .venv/bin/python -m loadtests.campaigns
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil

from loadtests.stack import bench_stack

TEMPLATE = {"name": "sale", "language": "en", "category": "marketing", "channel": "sms",
            "body": "Hi {{name}}, {{pct}}% off today. Reply STOP to opt out"}  # fmt: skip
CHUNK = 1024 * 1024
MIB = 1024 * 1024


def _to(n: int) -> str:
    return f"+4475{n // 1_000_000 % 10}{n % 1_000_000:06d}7"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("to,name,pct,reference\r\n")
        block: list[str] = []
        for i in range(1, rows + 1):
            to = "12345" if i % 1000 == 0 else _to(i)
            block.append(f"{to},Customer {i % 997},{i % 90},order-{i}\r\n")
            if len(block) == 100_000:
                out.write("".join(block))
                block.clear()
        out.write("".join(block))


def api_process() -> psutil.Process:
    for process in psutil.process_iter():
        try:
            argv = process.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "herald_cli" in argv and argv[argv.index("herald_cli") + 1 :][:1] == ["api"]:
            return process
    raise SystemExit("no `herald api` process found")


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


async def upload(http: httpx.AsyncClient, auth: dict[str, str], path: Path, api: psutil.Process,
                 rows: int) -> tuple[float, int, int]:  # fmt: skip
    """(rows/s, peak RSS while it ingested, RSS before) for one campaign's upload of `path`."""
    body = {"name": path.stem, "template": {"name": "sale", "language": "en"}}
    campaign = (await http.post("/v1/campaigns", headers=auth, json=body)).json()
    before = api.memory_info().rss
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, api.memory_info().rss)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    r = await http.put(f"/v1/campaigns/{campaign['id']}/recipients", content=_chunks(path),
                       headers={**auth, "content-type": "text/csv"}, timeout=None)  # fmt: skip
    seconds = time.perf_counter() - started
    done.set()
    await sampler
    assert r.status_code == 200, r.text[:500]
    counts = r.json()["counts"]
    assert counts["rows"] == rows, counts
    assert counts["rejected"] == rows // 1000, counts
    return rows / seconds, peak, before


async def batch_ceiling(http: httpx.AsyncClient, auth: dict[str, str], batches: int) -> float:
    """msgs/s of `POST /v1/messages/batch`, 1,000 new recipients each, 8 requests in flight."""
    sem = asyncio.Semaphore(8)

    async def one(b: int) -> None:
        items = [{"to": _to(9_000_000 + b * 1000 + i), "channel": "sms", "template": {"name": "sale", "language": "en"},
                  "params": {"name": "Customer", "pct": "20"}} for i in range(1000)]  # fmt: skip
        async with sem:
            r = await http.post("/v1/messages/batch", headers=auth, json={"messages": items})
        assert r.status_code == 202, r.text[:300]
        assert r.json()["accepted"] == 1000, r.text[:300]

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in range(batches)))
    return batches * 1000 / (time.perf_counter() - started)


async def run(base: str, admin_token: str, rows: int, small: Path, large: Path, batches: int) -> None:
    admin = {"authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        new = {"name": "Campaigns", "tier": "enterprise", "verified": True}
        tenant = (await http.post("/v1/admin/tenants", headers=admin, json=new)).json()
        key = (await http.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=admin, json={"kind": "live"})).json()
        auth = {"authorization": f"Bearer {key['key']}"}
        assert (await http.post("/v1/templates", headers=auth, json=TEMPLATE)).status_code == 201
        api = api_process()
        ceiling = await batch_ceiling(http, auth, batches)
        print(f"ceiling: POST /v1/messages/batch, new recipients: {ceiling:,.0f} msg/s ({batches:,} batches of 1,000)")
        for path, count in ((small, rows // 10), (large, rows)):
            rate, peak, before = await upload(http, auth, path, api, count)
            print(f"upload {count:>11,} rows ({path.stat().st_size / MIB:,.0f} MiB CSV): {rate:>8,.0f} rows/s,"
                  f" ratio to the batch API {rate / ceiling:.2f}; API RSS {before / MIB:,.0f} MiB before,"
                  f" peak {peak / MIB:,.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-bench-campaigns-") as tmp:
        small, large = Path(tmp) / "small.csv", Path(tmp) / "large.csv"
        started = time.perf_counter()
        write_csv(small, args.rows // 10)
        write_csv(large, args.rows)
        print(f"wrote {args.rows:,} + {args.rows // 10:,} rows of CSV in {time.perf_counter() - started:.0f} s")
        with bench_stack(Path(tmp) / "stack", ("api",)) as stack:
            asyncio.run(run(stack.api_url, stack.admin_token, args.rows, small, large, args.batches))


if __name__ == "__main__":
    main()
