"""Rate cards through the admin API and the CLI; the billing commands end to end."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from herald.billing.period import Month
from herald.billing.ratecards import default_card
from tests.integration.billing_data import seed_ledger
from tests.integration.harness import Platform


def _card_body(effective_from: datetime, **extra: object) -> dict[str, object]:
    prices = [
        {"channel": p.channel.value, "category": p.category.value, "country": p.country,
         "unit_price_micros": p.unit_price_micros + 1}
        for p in default_card().prices
    ]  # fmt: skip
    return {"effective_from": effective_from.isoformat(), "currency": "EUR", "prices": prices, **extra}


async def test_rate_cards_are_imported_listed_and_read_by_admins_only(api: Platform) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    r = await api.http.post("/v1/admin/rate-cards", headers=api.admin, json=_card_body(soon, note="Q1 prices"))
    assert r.status_code == 201, r.text
    card = r.json()
    assert (card["version"], card["currency"], card["note"]) == (2, "EUR", "Q1 prices")
    assert card["price_count"] == len(card["prices"]) == len(default_card().prices)
    assert datetime.fromisoformat(card["effective_from"]) == soon

    listed = (await api.http.get("/v1/admin/rate-cards", headers=api.admin)).json()
    assert [c["version"] for c in listed] == [1, 2]
    assert listed[0]["note"] == "default rate card shipped with Herald"
    assert (await api.http.get("/v1/admin/rate-cards/2", headers=api.admin)).json() == card
    missing = await api.http.get("/v1/admin/rate-cards/99", headers=api.admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "rate_card_not_found")

    _, tenant = await api.tenant_with_key()
    assert (await api.http.get("/v1/admin/rate-cards", headers=tenant)).status_code == 401


async def test_bad_rate_cards_are_refused_and_change_nothing(api: Platform) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    incomplete = _card_body(soon)
    incomplete["prices"] = [p for p in incomplete["prices"] if p["country"] != "*"]  # type: ignore[attr-defined]
    cases = [
        (_card_body(datetime.now(UTC) - timedelta(days=1)), "rate_card_backdated", "effective_from"),
        (incomplete, "rate_card_incomplete", "prices"),
        (_card_body(soon, currency="euro"), "validation_failed", "currency"),
        (_card_body(soon, discount=5), "validation_failed", "discount"),
    ]
    for body, code, field in cases:
        r = await api.http.post("/v1/admin/rate-cards", headers=api.admin, json=body)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert (problem["code"], [e["field"] for e in problem["errors"]]) == (code, [field]), problem
    listed = (await api.http.get("/v1/admin/rate-cards", headers=api.admin)).json()
    assert [c["version"] for c in listed] == [1]


def _herald(dsn: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERALD_DATABASE_URL": dsn, "HERALD_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "herald_cli", "billing", *map(str, args)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_cli_imports_a_card_and_exports_what_the_api_serves(api: Platform, tmp_path: Path) -> None:
    dsn = api.settings.database.url
    sheet = tmp_path / "card.csv"
    sheet.write_text(
        "channel,category,country,unit_price_micros\n"
        + "".join(f"{p.channel},{p.category},{p.country},{p.unit_price_micros}\n" for p in default_card().prices)
    )
    effective = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    done = await asyncio.to_thread(
        _herald, dsn, "import-rate-card", sheet, "--effective-from", effective, "--note", "x"
    )
    assert done.returncode == 0, done.stderr
    assert "rate card version 2" in done.stdout
    listed = await asyncio.to_thread(_herald, dsn, "rate-cards")
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["v1", "v2"]

    bad = tmp_path / "bad.csv"
    bad.write_text("channel,category,country,unit_price_micros\nsms,utility,GB,cheap\n")
    refused = await asyncio.to_thread(_herald, dsn, "import-rate-card", bad, "--effective-from", effective)
    assert refused.returncode == 2
    assert "line 2" in refused.stderr

    tenant = uuid.UUID((await api.tenant())["id"])
    month = Month.parse("2026-09")
    conn = await asyncpg.connect(dsn)
    try:
        await seed_ledger(conn, [tenant], month, 12_345)
    finally:
        await conn.close()
    # Closed, the month's figures are as of its close: the CLI's file and the API's answer agree to the byte.
    closed = await asyncio.to_thread(_herald, dsn, "close", "--month", "2026-09", "--by", "billing@example.com")
    assert closed.returncode == 0, closed.stderr
    assert "2026-09 closed at" in closed.stdout
    out = tmp_path / "usage.csv"
    exported = await asyncio.to_thread(
        _herald, dsn, "export", "--month", "2026-09", "--detail", "messages", "--format", "csv", "-o", out
    )
    assert exported.returncode == 0, exported.stderr
    assert "12,345 rows written" in exported.stderr
    served = await api.http.get(
        "/v1/admin/usage", headers=api.admin, params={"month": "2026-09", "detail": "messages", "format": "csv"}
    )
    assert out.read_bytes() == served.content
    assert len(list(csv.DictReader(io.StringIO(served.text)))) == 12_345
    assert not out.with_name("usage.csv.partial").exists()

    # Reconciliation: the seeded rows have no messages behind them, so every one is `unexpected`.
    reconciled = await asyncio.to_thread(_herald, dsn, "reconcile", "--month", "2026-09", "--limit", "3")
    assert reconciled.returncode == 1
    assert "12,345 ledger rows, 0 billable messages, 12,345 differences" in reconciled.stdout
    assert reconciled.stdout.count("unexpected\t") == 3
    assert "closed; still holds the totals recorded at its close" in reconciled.stdout
    quiet = await asyncio.to_thread(_herald, dsn, "reconcile", "--month", "2026-08")
    assert quiet.returncode == 0, quiet.stdout
    short_month = await asyncio.to_thread(_herald, dsn, "export", "--month", "2026-9", "-o", out)
    assert short_month.returncode == 2
    assert out.read_bytes() == served.content  # the earlier export is untouched
    malformed = await asyncio.to_thread(_herald, dsn, "reconcile", "--month", "September")
    assert (malformed.returncode, "expected YYYY-MM" in malformed.stderr) == (2, True)
