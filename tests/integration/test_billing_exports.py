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

from herald.billing.period import Month
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
                " unit_price_micros, currency, billed_at) VALUES ($1, $2, 'sms', 'utility', 'GB', 1, 38500, 'EUR', $3)",
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
    return (str(row["tenant_id"]), row["channel"], row["category"], row["country"] or "", row["currency"])


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
    assert r.text == "tenant_id,channel,category,country,currency,messages,amount_micros\n"


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
    assert sorted((line["channel"], line["category"], line["country"] or "", line["messages"], line["amount_micros"])
                  for line in usage["lines"]) == sorted(
        (s["channel"], s["category"], s["country"] or "", s["messages"], s["amount_micros"]) for s in summary
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
