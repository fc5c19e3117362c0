"""Campaigns end to end: a file of rows in, each valid row sent once, the bad ones reported by row;
pause, resume and cancel mid-campaign; the producing API process SIGKILLed mid-campaign.

The files follow RFC 4180 (CSV) and the Apache Parquet format as pyarrow writes it."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald.embedded import free_port
from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform
from tests.integration.processes import env_for, spawn, stop

PROMO = {"name": "sale", "body": "Hi {{name}}, {{pct}}% off today. Reply STOP to opt out", "category": "marketing"}


def _to(n: int) -> str:
    return f"+447400{n:05d}7"


def _csv(rows: list[list[str]], header: tuple[str, ...] = ("to", "name", "pct", "reference")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


async def _campaign(platform: Platform, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = await platform.http.post(
        "/v1/campaigns", headers=auth, json={"name": "spring sale", "template": {"name": "sale", "language": "en"},
                                             **fields},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "draft"
    return dict(r.json())


async def _upload(platform: Platform, auth: dict[str, str], campaign: str, body: bytes,
                  media: str = "text/csv") -> dict[str, Any]:  # fmt: skip
    r = await platform.http.put(
        f"/v1/campaigns/{campaign}/recipients", headers={**auth, "content-type": media}, content=body, timeout=120
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _read(platform: Platform, auth: dict[str, str], campaign: str) -> dict[str, Any]:
    r = await platform.http.get(f"/v1/campaigns/{campaign}", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _act(platform: Platform, auth: dict[str, str], campaign: str, action: str, **body: Any) -> dict[str, Any]:
    r = await platform.http.post(f"/v1/campaigns/{campaign}/{action}", headers=auth, json=body or None)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _sends_of(pool: asyncpg.Pool, platform: Platform, campaign: str) -> dict[str, int]:
    ids = {str(r["id"]) for r in await pool.fetch("SELECT id FROM messages WHERE campaign_id = $1::uuid", campaign)}
    return {i: n for i, n in platform.sim_sends().items() if i in ids}


async def test_a_campaign_sends_each_good_row_once_and_reports_the_bad_ones_by_row(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth, channel="sms", **PROMO)
    n = 3000
    rows = [[_to(i), f"Ana{i}", "20", f"r{i}"] for i in range(1, n + 1)]
    bad = {
        7: ([_to(7)[:-3], "Ana", "20", "r7"], "invalid_recipient", "to"),  # too short to be a number
        100: ([_to(100), "Ana", "20", "r" * 200], None, "reference"),  # longer than a reference may be
        1500: ([_to(1500), "Ana"], "row_malformed", None),  # fewer cells than the header
        2999: ([_to(2999), "x" * 2000, "20", "r"], None, "params.name"),  # longer than a param may be
    }
    for row, (cells, _, _) in bad.items():
        rows[row - 1] = cells
    # Suppressed after the upload: refused when its row is produced (the list is read then).
    r = await platform.http.post("/v1/suppressions", headers=auth, json={"channel": "sms", "recipient": _to(42)})
    assert r.status_code in (200, 201), r.text
    campaign = await _campaign(platform, auth)
    uploaded = await _upload(platform, auth, campaign["id"], _csv(rows))
    assert uploaded["counts"]["rows"] == n
    assert uploaded["counts"]["rejected"] == len(bad)

    estimate = (await platform.http.get(f"/v1/campaigns/{campaign['id']}/estimate", headers=auth)).json()
    assert estimate["messages"] == n - len(bad)
    assert estimate["new_recipients"] == n - len(bad)
    assert estimate["billed"] is True and estimate["total_micros"] > 0

    started = await _act(platform, auth, campaign["id"], "start")
    assert started["state"] == "sending"

    async def done() -> dict[str, Any]:
        return await _read(platform, auth, campaign["id"])

    final = await eventually(
        done, lambda c: c["state"] == "completed" and c["counts"]["delivered"] == n - len(bad) - 1,
        "every good row delivered", seconds=120,
    )  # fmt: skip
    assert final["counts"]["accepted"] == n - len(bad) - 1
    assert final["counts"]["rejected"] == len(bad) + 1
    sends = await _sends_of(pool, platform, campaign["id"])
    assert len(sends) == n - len(bad) - 1 and set(sends.values()) == {1}, "each good row sent once"

    r = await platform.http.get(f"/v1/campaigns/{campaign['id']}/rejections", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    listed = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(x["row"]) for x in listed] == sorted([*bad, 42])
    by_row = {int(x["row"]): x for x in listed}
    for row, (_, code, field) in bad.items():
        if code is not None:
            assert by_row[row]["code"] == code, by_row[row]
        if field is not None:
            assert by_row[row]["field"] == field, by_row[row]
    assert by_row[42]["code"] == "recipient_suppressed"
    assert _to(42) not in r.text and "Ana" not in r.text, "the rejections name rows, never their values"

    # Billed once per delivered message, at the estimate's price.
    async def billed() -> tuple[int, int]:
        row = await pool.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(b.unit_price_micros * b.quantity), 0) AS micros FROM billing_records b"
            " JOIN messages m ON m.id = b.message_id WHERE m.campaign_id = $1::uuid", campaign["id"],
        )  # fmt: skip
        assert row is not None
        return row["n"], row["micros"]

    per_message = estimate["total_micros"] // estimate["messages"]
    assert per_message * estimate["messages"] == estimate["total_micros"], "one country, one segment: one price"
    await eventually(billed, lambda b: b == (n - len(bad) - 1, per_message * (n - len(bad) - 1)),
                     "the estimate's price, once per delivered message", seconds=30)  # fmt: skip

    listed_messages = await platform.http.get("/v1/messages", headers=auth, params={"campaign": campaign["id"]})
    assert len(listed_messages.json()["items"]) == 100
