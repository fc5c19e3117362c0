"""The billing team's month close (issue #30): closed months never change, late usage becomes an
adjustment in the open month, credits and corrections, customers and currencies, invoices."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import quote

import asyncpg
import pandas as pd
import pypdfium2 as pdfium
import pytest

from herald.billing.period import Month
from herald.billing.ratecards import default_card
from herald.db import billing
from herald.domain.models import Channel
from herald.domain.status import Status
from herald_sinks.main import run_sinks
from tests.integration.billing_data import seed_ledger
from tests.integration.harness import Loop, Platform, ledger, wait_ledger_rows
from tests.integration.test_billing_ledger import _event, _message, _produce

NOW = datetime.now(UTC)
THIS = Month.of(NOW)
LAST = Month.of(THIS.start - timedelta(days=1))


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def _exports(api: Platform, month: Month) -> dict[str, bytes]:
    found = {}
    for fmt in ("csv", "jsonl", "parquet"):
        for detail in ("messages", "summary"):
            r = await api.http.get("/v1/admin/usage", headers=api.admin,
                                   params={"month": month.label, "format": fmt, "detail": detail})  # fmt: skip
            assert r.status_code == 200, r.text
            found[f"{detail}.{fmt}"] = r.content
    return found


async def _profile(api: Platform, tenant_id: str, **fields: Any) -> Any:
    body = {"legal_name": "Société Générale de Voyages", "currency": "EUR", "country": "FR", **fields}
    return await api.http.put(f"/v1/admin/tenants/{tenant_id}/billing", headers=api.admin, json=body)


async def test_a_receipt_late_for_a_closed_month_posts_to_the_open_one_and_the_closed_export_never_changes(
    api: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id = uuid.UUID((await api.tenant(tier="enterprise"))["id"])
    at_ms = _ms(LAST.start + timedelta(days=10))
    on_time = _message(tenant_id, 1, at_ms)
    late = _message(tenant_id, 2, at_ms)
    sinks = Loop(api.settings, run_sinks)
    try:
        await _produce(api.settings, [on_time, late], [
            _event(on_time, Status.SENT, at_ms + 1000), _event(on_time, Status.DELIVERED, at_ms + 2000),
            _event(late, Status.SENT, at_ms + 1000),
        ])  # fmt: skip
        await wait_ledger_rows(pool, 1)
        r = await api.http.post(f"/v1/admin/billing/periods/{LAST.label}/close", headers=api.admin,
                                json={"closed_by": "billing@example.com"})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["totals"] == [
            {"tenant_id": str(tenant_id), "currency": "EUR", "rows": 1,
             "usage_micros": (await ledger(pool))[0]["unit_price_micros"], "entries_micros": 0}
        ]  # fmt: skip
        closed = await _exports(api, LAST)
        # The delivery receipt of `late`, dated inside the closed month, arrives after the close.
        await _produce(api.settings, [], [_event(late, Status.DELIVERED, at_ms + 3000)])
        rows = await wait_ledger_rows(pool, 2)
    finally:
        await sinks.stop()
    row = await pool.fetchrow("SELECT period, kind, billed_at FROM billing_records WHERE message_id = $1", late.id)
    assert row is not None
    assert (row["period"], row["kind"]) == (THIS.start.date(), "adjustment")
    assert row["billed_at"] == datetime.fromtimestamp((at_ms + 3000) / 1000, tz=UTC)  # its own date, kept
    assert await _exports(api, LAST) == closed  # byte for byte, every format and detail

    current = pd.read_csv(io.BytesIO((await _exports(api, THIS))["messages.csv"]))
    moved = current[current["message_id"] == str(late.id)].iloc[0]
    assert (moved["kind"], moved["ChargeCategory"], moved["ChargeClass"]) == ("adjustment", "Usage", "Correction")
    assert pd.Timestamp(moved["ChargePeriodStart"]) == pd.Timestamp(LAST.start)
    assert pd.Timestamp(moved["BillingPeriodStart"]) == pd.Timestamp(THIS.start)

    reconciled = await billing.reconcile(pool, LAST)
    assert (reconciled.differences, reconciled.late_usage_rows) == ([], 1)
    assert (reconciled.closed, reconciled.close_intact) == (True, True)
    assert len(rows) == 2


async def test_a_credit_shows_on_the_invoice_and_in_the_reconcile_and_invoices_equal_the_ledger(
    api: Platform, pool: asyncpg.Pool
) -> None:
    tenant = (await api.tenant(tier="enterprise"))["id"]
    other = (await api.tenant(tier="enterprise"))["id"]
    conn = await asyncpg.connect(api.settings.database.url)
    try:
        await seed_ledger(conn, [uuid.UUID(tenant)], THIS, 4_000)
        await seed_ledger(conn, [uuid.UUID(other)], THIS, 10)
    finally:
        await conn.close()
    assert (r := await _profile(api, tenant, external_customer_id="CUST-0042")).status_code == 200, r.text
    credit = await api.http.post(f"/v1/admin/tenants/{tenant}/billing/entries", headers=api.admin, json={
        "kind": "credit", "amount_micros": 12_345_678, "reason": "outage on the 3rd", "created_by": "ana@billing",
    })  # fmt: skip
    assert credit.status_code == 201, credit.text
    assert (credit.json()["amount_micros"], credit.json()["month"]) == (-12_345_678, THIS.label)
    other_row = await pool.fetchval("SELECT message_id FROM billing_records WHERE tenant_id = $1 LIMIT 1",
                                    uuid.UUID(other))  # fmt: skip
    foreign = await api.http.post(f"/v1/admin/tenants/{tenant}/billing/entries", headers=api.admin, json={
        "kind": "correction", "amount_micros": -5, "reason": "x", "created_by": "ana@billing",
        "corrects_message_id": str(other_row),
    })  # fmt: skip
    assert (foreign.status_code, foreign.json()["code"]) == (404, "ledger_row_not_found")

    r = await api.http.get(f"/v1/admin/invoices/{tenant}", headers=api.admin, params={"month": THIS.label})
    assert r.status_code == 200, r.text
    invoice = r.json()
    ledger_micros = await pool.fetchval(
        "SELECT sum(unit_price_micros) FROM billing_records WHERE tenant_id = $1", uuid.UUID(tenant)
    )
    assert invoice["ledger_micros"] == ledger_micros - 12_345_678
    assert invoice["status"] == "draft"
    assert invoice["number"] == f"HER-{THIS.label.replace('-', '')}-CUST-0042-EUR"
    # The rounding rule, recomputed here from the ledger: each line half-even to the cent.
    groups = await pool.fetch(
        "SELECT unit_price_micros * count(*) AS micros FROM billing_records WHERE tenant_id = $1"
        " GROUP BY kind, channel, category, country, rate_card_version, unit_price_micros", uuid.UUID(tenant),
    )  # fmt: skip
    cents = [(Decimal(g["micros"]) / 1_000_000).quantize(Decimal("0.01"), ROUND_HALF_EVEN) for g in groups]
    subtotal = sum(cents, Decimal(0)) + Decimal("-12.35")
    assert Decimal(invoice["subtotal"]) == subtotal
    assert abs(subtotal - Decimal(ledger_micros - 12_345_678) / 1_000_000) <= Decimal("0.005") * (len(cents) + 1)
    assert invoice["tax"]["treatment"] == "destination"
    assert Decimal(invoice["tax"]["rate_percent"]) == 20
    assert Decimal(invoice["tax_amount"]) == (subtotal * Decimal("0.2")).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    assert Decimal(invoice["total"]) == subtotal + Decimal(invoice["tax_amount"])
    assert invoice["lines"][-1]["kind"] == "credit"
    assert invoice["lines"][-1]["amount"] == "-12.35"

    pdf = await api.http.get(f"/v1/admin/invoices/{tenant}", headers=api.admin,
                             params={"month": THIS.label, "format": "pdf"})  # fmt: skip
    assert pdf.headers["content-type"] == "application/pdf"
    document = pdfium.PdfDocument(pdf.content)
    page = document[0]
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    assert invoice["number"] in text
    assert f"{Decimal(invoice['total']):,} EUR" in text
    assert "-12.35 EUR" in text
    image = page.render(scale=1).to_pil().convert("L")
    assert abs(image.size[0] - 595) <= 1
    assert abs(image.size[1] - 842) <= 1
    assert sum(1 for p in image.get_flattened_data() if p < 128) > 2_000  # printed, not blank

    lines = await api.http.get("/v1/admin/invoices", headers=api.admin, params={"month": THIS.label})
    assert (lines.status_code, lines.json()["code"]) == (409, "billing_profile_missing")  # `other` has none
    assert (await _profile(api, other, currency="EUR", country="DE", vat_id="DE123456789")).status_code == 200
    lines = await api.http.get("/v1/admin/invoices", headers=api.admin, params={"month": THIS.label})
    table = pd.read_csv(io.BytesIO(lines.content))
    totals = table[table["kind"] == "total"].set_index("tenant_id")["amount"]
    assert Decimal(str(totals[tenant])) == Decimal(invoice["total"])
    reverse = table[(table["tenant_id"] == other) & (table["kind"] == "tax")].iloc[0]
    assert reverse["amount"] == 0
    assert "reverse_charge" in reverse["description"]

    reconciled = await billing.reconcile(pool, THIS)
    assert [(e.kind, e.count, e.amount_micros) for e in reconciled.entries] == [("credit", 1, -12_345_678)]
    detail = pd.read_csv(io.BytesIO((await _exports(api, THIS))["messages.csv"]))
    assert detail["amount_micros"].sum() == ledger_micros - 12_345_678 + await pool.fetchval(
        "SELECT sum(unit_price_micros) FROM billing_records WHERE tenant_id = $1", uuid.UUID(other)
    )
    assert detail[detail["kind"] == "credit"]["ChargeCategory"].tolist() == ["Credit"]
    assert (detail["BilledCost"] * 1_000_000).round().astype("int64").sum() == detail["amount_micros"].sum()


async def test_a_tenants_month_is_priced_in_its_own_currency_and_never_split(api: Platform, pool: asyncpg.Pool) -> None:
    tenant = (await api.tenant(tier="enterprise"))["id"]
    r = await _profile(api, tenant, currency="USD", country="US")
    assert (r.status_code, r.json()["code"], r.json()["errors"][0]["field"]) == (422, "no_rate_card_in_currency",
                                                                                  "currency")  # fmt: skip
    effective = datetime.now(UTC) + timedelta(seconds=1)
    prices = [{"channel": p.channel.value, "category": p.category.value, "country": p.country,
               "unit_price_micros": p.unit_price_micros * 2} for p in default_card().prices]  # fmt: skip
    card = {"effective_from": effective.isoformat(), "currency": "USD", "prices": prices}
    r = await api.http.post("/v1/admin/rate-cards", headers=api.admin, json=card)
    assert r.status_code == 201, r.text
    assert (await _profile(api, tenant, currency="USD", country="US")).status_code == 200
    at_ms = _ms(effective) + 1000
    message = _message(uuid.UUID(tenant), 1, at_ms, channel=Channel.SMS)
    sinks = Loop(api.settings, run_sinks)
    try:
        await _produce(api.settings, [message], [_event(message, Status.SENT, at_ms),
                                                 _event(message, Status.DELIVERED, at_ms + 1)])  # fmt: skip
        rows = await wait_ledger_rows(pool, 1)
    finally:
        await sinks.stop()
    usd = {(p["channel"], p["category"], p["country"]): p["unit_price_micros"] for p in prices}
    assert (rows[0]["currency"], rows[0]["unit_price_micros"]) == ("USD", usd[("sms", "utility", "GB")])
    # Back to EUR while its open month has USD usage would split the month: refused.
    r = await _profile(api, tenant, currency="EUR", country="US")
    assert (r.status_code, r.json()["code"]) == (409, "currency_change_mid_period")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"),
    [
        ("post", f"/v1/admin/billing/periods/{THIS.label}/close", {"closed_by": "x"}, 409, "period_not_ended", None),
        ("post", "/v1/admin/billing/periods/2026-13/close", {"closed_by": "x"}, 422, None, "month"),
        ("post", f"/v1/admin/billing/periods/{LAST.label}/close", {}, 422, "validation_failed", "closed_by"),
        ("put", "/v1/admin/tenants/{t}/billing", {"legal_name": "A", "currency": "EUX", "country": "FR"},
         422, "invalid_currency", "currency"),
        ("put", "/v1/admin/tenants/{t}/billing", {"legal_name": "A", "currency": "EUR", "country": "XQ"},
         422, "invalid_country", "country"),
        ("put", "/v1/admin/tenants/{unknown}/billing", {"legal_name": "A", "currency": "EUR", "country": "FR"},
         404, "tenant_not_found", None),
        ("post", "/v1/admin/tenants/{t}/billing/entries",
         {"kind": "credit", "amount_micros": 0, "reason": "r", "created_by": "b"}, 422, "invalid_entry",
         "amount_micros"),
        ("post", "/v1/admin/tenants/{t}/billing/entries",
         {"kind": "correction", "amount_micros": 5, "reason": "r", "created_by": "b"}, 422, "invalid_entry", None),
        ("post", "/v1/admin/tenants/{t}/billing/entries",
         {"kind": "credit", "amount_micros": 5, "reason": "r", "created_by": "b", "month": "2999-01"},
         422, "period_in_future", "month"),
        ("get", "/v1/admin/invoices/{t}?month=" + THIS.label, None, 409, "billing_profile_missing", None),
        ("get", "/v1/admin/invoices/{unknown}?month=" + THIS.label, None, 404, "tenant_not_found", None),
    ],
)  # fmt: skip
async def test_bad_month_close_requests_are_problems_that_change_nothing(
    api: Platform, pool: asyncpg.Pool, method: str, path: str, body: dict[str, Any] | None, status: int,
    code: str | None, field: str | None,
) -> None:  # fmt: skip
    tenant = (await api.tenant(tier="enterprise"))["id"]
    path = path.replace("{t}", tenant).replace("{unknown}", str(uuid.uuid4()))
    r = await api.http.request(method.upper(), path, headers=api.admin, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if code is not None:
        assert r.json()["code"] == code
    if field is not None:
        assert field in r.text
    changed = await pool.fetchval(
        "SELECT (SELECT count(*) FROM billing_closes) + (SELECT count(*) FROM billing_entries)"
        " + (SELECT count(*) FROM billing_customers)"
    )
    assert changed == 0


async def test_an_invoice_downloads_under_any_customer_id_the_billing_team_typed(api: Platform) -> None:
    """The file name carries the external customer id; HTTP headers are Latin-1 and a quote ends the
    quoted name, so an id like the one below once made every download of that invoice a 500."""
    tenant = (await api.tenant(tier="enterprise"))["id"]
    assert (await _profile(api, tenant, external_customer_id='Łódź "north"/7')).status_code == 200
    for fmt in ("pdf", "csv"):
        r = await api.http.get(f"/v1/admin/invoices/{tenant}", headers=api.admin,
                               params={"month": THIS.label, "format": fmt, "currency": "PLN"})  # fmt: skip
        assert r.status_code == 200, r.text
        number = f'HER-{THIS.label.replace("-", "")}-Łódź "north"/7-PLN'
        assert r.headers["content-disposition"] == (
            f'attachment; filename="HER-{THIS.label.replace("-", "")}-__d___north__7-PLN.{fmt}"; '
            f"filename*=UTF-8''{quote(f'{number}.{fmt}', safe='')}"
        )
    unknown = await api.http.get(f"/v1/admin/invoices/{tenant}", headers=api.admin,
                                 params={"month": THIS.label, "currency": "ZKH"})  # fmt: skip
    assert (unknown.status_code, unknown.json()["code"]) == (422, "invalid_currency")
    assert "currency" in unknown.text


async def test_months_close_in_order_and_a_closed_month_takes_no_entries(api: Platform, pool: asyncpg.Pool) -> None:
    tenant = (await api.tenant(tier="enterprise"))["id"]
    before = Month.of(LAST.start - timedelta(days=1))
    conn = await asyncpg.connect(api.settings.database.url)
    try:
        await seed_ledger(conn, [uuid.UUID(tenant)], before, 3)
        await seed_ledger(conn, [uuid.UUID(tenant)], LAST, 3)
    finally:
        await conn.close()

    async def close(month: Month) -> Any:
        return await api.http.post(f"/v1/admin/billing/periods/{month.label}/close", headers=api.admin,
                                   json={"closed_by": "billing@example.com"})  # fmt: skip

    r = await close(LAST)
    assert (r.status_code, r.json()["code"]) == (409, "period_out_of_order")
    assert before.label in r.json()["detail"]
    assert (await close(before)).status_code == 201
    assert (await close(before)).json()["code"] == "period_closed"
    assert (await close(LAST)).status_code == 201
    r = await api.http.post(f"/v1/admin/tenants/{tenant}/billing/entries", headers=api.admin, json={
        "kind": "credit", "amount_micros": 5, "reason": "r", "created_by": "b", "month": LAST.label,
    })  # fmt: skip
    assert (r.status_code, r.json()["code"]) == (409, "period_closed")
    listed = (await api.http.get("/v1/admin/billing/periods", headers=api.admin)).json()
    assert [c["month"] for c in listed] == [before.label, LAST.label]
    assert await pool.fetchval("SELECT count(*) FROM billing_entries") == 0


async def test_an_event_dated_before_its_message_existed_bills_in_the_messages_month(
    api: Platform, pool: asyncpg.Pool
) -> None:
    """Issue #30 defect 2: an event's own time was the billing time, so one dated before its
    message was created (a provider's clock, a skewed host) billed it into an earlier month,
    closed or not. The billing time is bounded below by the message's creation."""
    tenant_id = uuid.UUID((await api.tenant(tier="enterprise"))["id"])
    created_ms = _ms(THIS.start + timedelta(days=1))
    message = _message(tenant_id, 1, created_ms)
    sinks = Loop(api.settings, run_sinks)
    try:
        early = _ms(LAST.start + timedelta(days=20))
        await _produce(api.settings, [message], [_event(message, Status.SENT, early),
                                                 _event(message, Status.DELIVERED, early + 1)])  # fmt: skip
        rows = await wait_ledger_rows(pool, 1)
    finally:
        await sinks.stop()
    assert rows[0]["billed_at"] == datetime.fromtimestamp(created_ms / 1000, tz=UTC)
    assert await pool.fetchval("SELECT period FROM billing_records") == THIS.start.date()
    assert (await billing.reconcile(pool, THIS)).differences == []
