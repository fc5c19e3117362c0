"""Billing benchmark (issue #5), ceilings measured in the same run on the same database.

1. ledger write: `db.billing.record` (what the billing sink runs per batch: COPY into staging, one
   set-based insert joined to messages/tenants/rate card with ON CONFLICT, the deferral check),
   in batches of --batch delivered events, against
   ceiling: raw asyncpg `copy_records_to_table` of the same number of finished ledger rows into a
   table shaped and indexed like billing_records, in the same batch size.
2. export: --export-rows ledger rows in one month, streamed by `billing.exports.export` (the
   code behind `GET /v1/admin/usage` and `herald billing export`) to a file, per format, each in
   a fresh process so its peak RSS (VmHWM) is the export's own; printed beside the file size.
   Ceiling: a bare asyncpg cursor over the same rows, decoding only.

    make bench-billing   # = .venv/bin/python -m loadtests.billing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from tests.integration.billing_data import seed_ledger

from herald.billing.period import Month
from herald.db import billing, usage
from herald.db.migrate import migrate
from herald.embedded import free_port
from herald.embedded.postgres import EmbeddedPostgres
from herald.exports import Detail, Format, export

MONTH = Month.parse("2026-10")
# Messages as the status projection leaves them: delivered sms in several countries.
SEED_MESSAGES = """
INSERT INTO messages (id, tenant_id, key_kind, channel, category, template_name, template_language,
                      template_version, country, status, created_at, expires_at, tier)
SELECT id, $1, 'live', 'sms', (ARRAY['authentication', 'utility', 'marketing'])[1 + n % 3], 't', 'en', 1,
       (ARRAY['GB', 'US', 'DE', 'BR', 'JP'])[1 + n % 5], 'delivered',
       $2::timestamptz, $2::timestamptz + interval '1 day', 'enterprise'
FROM unnest($3::uuid[]) WITH ORDINALITY AS x(id, n)
"""


def _status(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(name)


async def ledger_write(dsn: str, rows: int, batch: int) -> dict[str, float]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        tenant = uuid.uuid4()
        await pool.execute("INSERT INTO tenants (id, name, tier) VALUES ($1, 'Bench', 'enterprise')", tenant)
        ids = [uuid.uuid4() for _ in range(rows)]
        at = MONTH.start + timedelta(days=3)
        await pool.execute(SEED_MESSAGES, tenant, at, ids)
        await pool.execute("ANALYZE messages")
        candidates = [billing.Candidate(i, "delivered", at) for i in ids]

        started = time.perf_counter()
        for k in range(0, rows, batch):
            await billing.record(pool, candidates[k : k + batch])
        ledger_s = time.perf_counter() - started
        written = await pool.fetchval("SELECT count(*) FROM billing_records")
        assert written == rows, (written, rows)

        # Replaying every batch (a redelivered topic) must write nothing; its rate is shown too.
        started = time.perf_counter()
        for k in range(0, rows, batch):
            assert (await billing.record(pool, candidates[k : k + batch])).written == 0
        replay_s = time.perf_counter() - started

        await pool.execute("CREATE TABLE bench_copy (LIKE billing_records INCLUDING ALL)")
        finished = [
            (i, tenant, "sms", "utility", "GB", 1, 38_500, "EUR", at, datetime.now(UTC), at.date(), "usage")
            for i in ids
        ]  # fmt: skip
        started = time.perf_counter()
        for k in range(0, rows, batch):
            await pool.copy_records_to_table("bench_copy", records=finished[k : k + batch])
        copy_s = time.perf_counter() - started
    finally:
        await pool.close()
    return {
        "ledger_rows_per_s": rows / ledger_s,
        "replay_rows_per_s": rows / replay_s,
        "copy_rows_per_s": rows / copy_s,
    }


async def export_once(dsn: str, fmt: str, out: Path) -> dict[str, float]:
    """One export in this (fresh) process: rows, rows/s and the RSS before it started."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        baseline = _status("VmRSS")
        rows = 0

        def count(n: int) -> None:
            nonlocal rows
            rows += n

        started = time.perf_counter()
        with out.open("wb") as sink:
            if fmt == "bare-cursor":
                async for chunk in usage.usage_rows(pool, MONTH, detail=True):
                    count(len(chunk))
            else:
                async for data in export(pool, MONTH, Detail.MESSAGES, Format(fmt), on_rows=count):
                    sink.write(data)
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return {"rows": rows, "rows_per_s": rows / seconds, "baseline_rss": baseline}


def _export_in_subprocess(dsn: str, fmt: str, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.billing", "--export-one", fmt, "--dsn", dsn, "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger-rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000, help="the billing sink's batch (sinks batch_max_records)")
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--export-one", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_one:
        measured = asyncio.run(export_once(args.dsn, args.export_one, args.out))
        print(json.dumps({**measured, "bytes": args.out.stat().st_size, "peak_rss": _status("VmHWM")}))
        return

    with tempfile.TemporaryDirectory(prefix="herald-bench-billing-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        pg.start()
        try:
            pg.psql("postgres", "CREATE DATABASE bench_ledger")
            pg.psql("postgres", "CREATE DATABASE bench_export")
            ledger_dsn, export_dsn = pg.dsn("bench_ledger"), pg.dsn("bench_export")
            asyncio.run(migrate(ledger_dsn))
            asyncio.run(migrate(export_dsn))

            print(f"ledger write: {args.ledger_rows:,} delivered events in batches of {args.batch:,}")
            w = asyncio.run(ledger_write(ledger_dsn, args.ledger_rows, args.batch))
            print(f"  billing sink write (db.billing.record): {w['ledger_rows_per_s']:>10,.0f} rows/s")
            print(f"  replay of the same events (no-op)      : {w['replay_rows_per_s']:>10,.0f} events/s")
            print(f"  ceiling: raw asyncpg COPY, same shape   : {w['copy_rows_per_s']:>10,.0f} rows/s")
            print(f"  ratio ledger / raw COPY                 : {w['ledger_rows_per_s'] / w['copy_rows_per_s']:.2f}")

            async def seed() -> None:
                conn = await asyncpg.connect(export_dsn)
                try:
                    await seed_ledger(conn, [uuid.uuid4() for _ in range(50)], MONTH, args.export_rows)
                    await conn.execute("VACUUM ANALYZE billing_records")
                finally:
                    await conn.close()

            asyncio.run(seed())
            print(f"export: {args.export_rows:,} ledger rows of {MONTH.label}, detail=messages, one process each")
            for fmt in ("bare-cursor", "csv", "jsonl", "parquet"):
                r = _export_in_subprocess(export_dsn, fmt, Path(tmp) / f"usage.{fmt}")
                assert r["rows"] == args.export_rows, r
                mib = 1024 * 1024
                print(
                    f"  {fmt:<12} {r['rows_per_s']:>10,.0f} rows/s  file {r['bytes'] / mib:>7.1f} MiB"
                    f"  peak RSS {r['peak_rss'] / mib:>6.1f} MiB (baseline {r['baseline_rss'] / mib:.1f} MiB)"
                )
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
