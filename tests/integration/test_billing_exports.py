"""Usage exports: every format parses back, detail sums to summary exactly, streamed in chunks."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest

from herald.billing.countries import exported
from herald.billing.period import Month
from herald.db import usage
from tests.integration.billing_data import seed_ledger
from tests.integration.harness import Platform

MONTH = Month.parse("2026-10")
ROWS = 25_000  # > two export chunks of 10,000


Key = tuple[str, str, str, str, str]


@pytest.fixture
async def ledger(api: Platform) -> dict[str, Any]:
    """Two tenants' October, plus rows on both sides of the month's edges."""
    a = (await api.tenant(tier="enterprise"))["id"]
    b = (await api.tenant(tier="standard"))["id"]
    conn = await asyncpg.connect(api.settings.database.url)
    try:
        await seed_ledger(conn, [uuid.UUID(a), uuid.UUID(b)], MONTH, ROWS)
        edges = [
            (MONTH.start, True),
            (MONTH.end - timedelta(microseconds=1), True),
            (MONTH.end, False),
            (MONTH.start - timedelta(microseconds=1), False),
        ]
        for at, _ in edges:
            await conn.execute(
                "INSERT INTO billing_records (message_id, tenant_id, channel, category, country, rate_card_version,"
                " unit_price_micros, currency, billed_at, period)"
                " VALUES ($1, $2, 'sms', 'utility', 'GB', 1, 38500, 'EUR', $3,"
                " date_trunc('month', $3 AT TIME ZONE 'UTC'))",
                uuid.uuid4(), uuid.UUID(a), at,
            )  # fmt: skip
    finally:
        await conn.close()
    return {"a": a, "b": b, "rows": ROWS + sum(1 for _, inside in edges if inside)}


async def _get(api: Platform, **params: str) -> bytes:
    r = await api.http.get("/v1/admin/usage", headers=api.admin, params={"month": MONTH.label, **params})
    assert r.status_code == 200, r.text
    return r.content


def _parse(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _key(row: dict[str, Any]) -> Key:
    return (str(row["tenant_id"]), row["channel"], row["category"], row["country"], row["currency"])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_detail_sums_to_summary_exactly_in_every_format(api: Platform, ledger: dict[str, Any], fmt: str) -> None:
    detail = _parse(fmt, await _get(api, format=fmt, detail="messages"))
    summary = _parse(fmt, await _get(api, format=fmt, detail="summary"))

    assert len(detail) == ledger["rows"]
    assert len({r["message_id"] for r in detail}) == len(detail)
    assert set(detail[0]) >= {
        "message_id", "tenant_id", "channel", "category", "country", "rate_card_version", "unit_price_micros",
        "currency", "billed_at",
    }  # fmt: skip
    counts: Counter[Key] = Counter()
    amounts: Counter[Key] = Counter()
    for row in detail:
        counts[_key(row)] += 1
        amounts[_key(row)] += int(row["unit_price_micros"])
    assert {_key(r): int(r["messages"]) for r in summary} == dict(counts)
    assert {_key(r): int(r["amount_micros"]) for r in summary} == dict(amounts)
    assert sum(int(r["messages"]) for r in summary) == ledger["rows"]


async def test_formats_agree_and_parquet_is_written_in_row_groups(api: Platform, ledger: dict[str, Any]) -> None:
    totals = {}
    for fmt in ("csv", "jsonl", "parquet"):
        rows = _parse(fmt, await _get(api, format=fmt, detail="messages", tenant_id=ledger["b"]))
        assert {str(r["tenant_id"]) for r in rows} == {ledger["b"]}
        totals[fmt] = (len(rows), sum(int(r["unit_price_micros"]) for r in rows))
    assert len(set(totals.values())) == 1, totals
    parquet = pq.ParquetFile(io.BytesIO(await _get(api, format="parquet", detail="messages")))
    # One row group per cursor chunk: the export never held the month in memory at once.
    assert parquet.metadata.num_row_groups == -(-ledger["rows"] // 10_000)
    assert str(parquet.schema_arrow.field("billed_at").type) == "timestamp[us, tz=UTC]"


async def test_export_headers_and_an_empty_month(api: Platform, ledger: dict[str, Any]) -> None:
    r = await api.http.get("/v1/admin/usage", headers=api.admin, params={"month": "2027-01", "format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="herald-usage-2027-01-summary.csv"' in r.headers["content-disposition"]
    assert r.text == ",".join(usage.SUMMARY_COLUMNS) + "\n"


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"month": "2026-13"}, 422, "month"),
        ({"month": "2026-10", "format": "xml"}, 422, "format"),
        ({"month": "2026-10", "detail": "everything"}, 422, "detail"),
        ({"month": "2026-10", "tenant_id": "not-a-uuid"}, 422, "tenant_id"),
        ({}, 422, "month"),
    ],
)
async def test_bad_export_parameters_are_problems(
    api: Platform, params: dict[str, str], status: int, field: str
) -> None:
    r = await api.http.get("/v1/admin/usage", headers=api.admin, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_exports_are_admin_only_and_unknown_tenants_404(api: Platform) -> None:
    _, auth = await api.tenant_with_key()
    r = await api.http.get("/v1/admin/usage", headers=auth, params={"month": "2026-10"})
    assert r.status_code == 401
    r = await api.http.get(
        "/v1/admin/usage", headers=api.admin, params={"month": "2026-10", "tenant_id": str(uuid.uuid4())}
    )
    assert (r.status_code, r.json()["code"]) == (404, "tenant_not_found")


async def test_tenant_sees_only_its_own_month(api: Platform, ledger: dict[str, Any]) -> None:
    auth = {"authorization": f"Bearer {await api.key(ledger['b'])}"}
    r = await api.http.get("/v1/usage", headers=auth, params={"month": MONTH.label})
    assert r.status_code == 200, r.text
    usage = r.json()
    summary = _parse("jsonl", await _get(api, format="jsonl", detail="summary", tenant_id=ledger["b"]))
    assert usage["month"] == MONTH.label
    # The tenant's JSON names countries as its messages do (alpha-2, null for none); exports in alpha-3.
    assert sorted((line["channel"], line["category"], exported(line["country"]), line["messages"],
                   line["amount_micros"]) for line in usage["lines"]) == sorted(
        (s["channel"], s["category"], s["country"], s["messages"], s["amount_micros"]) for s in summary
    )  # fmt: skip
    assert usage["totals"] == [
        {
            "currency": "EUR",
            "messages": sum(s["messages"] for s in summary),
            "amount_micros": sum(s["amount_micros"] for s in summary),
        }
    ]
    # Another tenant with no usage sees an empty month, not tenant B's.
    _, other = await api.tenant_with_key()
    empty = (await api.http.get("/v1/usage", headers=other, params={"month": MONTH.label})).json()
    assert empty == {"month": MONTH.label, "lines": [], "totals": []}


async def test_exports_read_back_with_the_defaults_of_pandas_and_polars(api: Platform) -> None:
    """Issue #30 defects 3-5: `isoformat` wrote `…T08:54:00+00:00` beside `….560000+00:00`, which
    pandas' `to_datetime` refuses; Namibia's `NA` and email's empty country read as missing, so a
    `groupby` dropped both; the CSV's Content-Type named its charset twice."""
    import pandas as pd
    import polars as pl

    tenant = (await api.tenant(tier="enterprise"))["id"]
    rows = [  # (country, price, billed_at): a whole second, a fraction, no country
        ("NA", 41_000, MONTH.start + timedelta(days=3, hours=8, minutes=54)),
        ("GB", 38_500, MONTH.start + timedelta(days=3, hours=8, minutes=54, microseconds=560_000)),
        (None, 900, MONTH.start + timedelta(days=4)),
    ]
    conn = await asyncpg.connect(api.settings.database.url)
    try:
        for country, price, at in rows:
            channel = "email" if country is None else "sms"
            await conn.execute(
                "INSERT INTO billing_records (message_id, tenant_id, channel, category, country, rate_card_version,"
                " unit_price_micros, currency, billed_at, period) VALUES ($1, $2, $3, 'utility', $4, 1, $5, 'EUR', $6,"
                " date_trunc('month', $6 AT TIME ZONE 'UTC'))",
                uuid.uuid4(), uuid.UUID(tenant), channel, country, price, at,
            )  # fmt: skip
    finally:
        await conn.close()
    total = sum(price for _, price, _ in rows)
    r = await api.http.get("/v1/admin/usage", headers=api.admin,
                           params={"month": MONTH.label, "format": "csv", "detail": "messages"})  # fmt: skip
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    csv_data, jsonl_data, parquet_data = [
        await _get(api, format=fmt, detail="messages") for fmt in ("csv", "jsonl", "parquet")
    ]
    assert b".000000Z" in csv_data
    assert b".560000Z" in csv_data

    frames = {
        "csv": pd.read_csv(io.BytesIO(csv_data)),
        "jsonl": pd.read_json(io.BytesIO(jsonl_data), lines=True),
        "parquet": pd.read_parquet(io.BytesIO(parquet_data)),
    }
    for fmt, frame in frames.items():
        assert sorted(frame["country"]) == ["GBR", "NAM", "ZZZ"], fmt
        assert frame.groupby("country")["unit_price_micros"].sum().sum() == total, fmt
        billed = pd.to_datetime(frame["billed_at"])
        assert str(billed.dt.tz) == "UTC", fmt
        assert sorted(billed) == sorted(pd.Timestamp(at) for _, _, at in rows), fmt

    polars_frames = {
        "csv": pl.read_csv(csv_data, try_parse_dates=True),
        "jsonl": pl.read_ndjson(jsonl_data),
        "parquet": pl.read_parquet(parquet_data),
    }
    for fmt, frame in polars_frames.items():
        assert frame["country"].null_count() == 0, fmt
        assert frame.group_by("country").agg(pl.col("unit_price_micros").sum())["unit_price_micros"].sum() == total
        billed = frame["billed_at"] if fmt != "jsonl" else frame["billed_at"].str.to_datetime(time_zone="UTC")
        assert billed.dtype == pl.Datetime("us", "UTC"), (fmt, billed.dtype)

    summary = pd.read_csv(io.BytesIO(await _get(api, format="csv", detail="summary")))
    assert summary["amount_micros"].sum() == total
    assert summary["country"].notna().all()
