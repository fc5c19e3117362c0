"""SMS as operators carry and bill it: coding, segments, billing per segment.

The segment figures are those carriers publish (Twilio, "What is an SMS segment?"): 160 GSM-7
characters in one segment, 153 per part of a longer text; 70 and 67 in UCS-2."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from herald.billing.period import Month
from herald.billing.ratecards import default_card
from herald.db import billing
from tests.integration.harness import Platform, wait_ledger_rows

GB_UTILITY = next(
    p.unit_price_micros for p in default_card().prices if (p.channel, p.category, p.country) == ("sms", "utility", "GB")
)


async def test_long_and_non_latin_texts_are_billed_by_segment_exactly(platform: Platform, pool: asyncpg.Pool) -> None:
    tenant_id, auth = await platform.tenant_with_key(tier="standard")
    await platform.template(auth, name="notice", body="{{text}}", category="utility")
    texts = {
        "short": ("Your parcel is on its way", 1),
        "gsm7": ("Gate change: " + "B" * 200, 2),  # 213 septets
        "euro": ("Refund of 12€ " + "x" * 146, 2),  # 161 septets: the euro takes two
        "ucs2": ("Привет! Ваш рейс задержан. " * 8, 4),  # 216 UCS-2 code units: 67 per part
    }
    sent: dict[str, str] = {}
    for n, (name, (text, segments)) in enumerate(texts.items()):
        r = await platform.send(
            auth, to=f"+447400{n:05d}7", template={"name": "notice", "language": "en"}, params={"text": text}
        )
        assert r.status_code == 202, r.text
        assert r.json()["segments"] == segments, name
        sent[name] = r.json()["id"]

    too_long = await platform.send(
        auth, to="+447400999997", template={"name": "notice", "language": "en"}, params={"text": "ж" * 700}
    )
    assert too_long.status_code == 422
    assert (too_long.json()["code"], too_long.json()["errors"][0]["field"]) == ("message_too_long", "params")

    for message_id in sent.values():
        await platform.wait_status(auth, message_id, {"delivered"})
    rows = await wait_ledger_rows(pool, len(texts))
    quantities = dict(
        await pool.fetch("SELECT message_id::text, quantity FROM billing_records WHERE tenant_id = $1",
                         uuid.UUID(tenant_id))
    )
    assert quantities == {sent[name]: segments for name, (_, segments) in texts.items()}
    assert {r["unit_price_micros"] for r in rows if str(r["tenant_id"]) == tenant_id} == {GB_UTILITY}

    message = (await platform.http.get(f"/v1/messages/{sent['ucs2']}", headers=auth)).json()
    assert message["segments"] == 4
    assert (message["price"]["quantity"], message["price"]["amount_micros"]) == (4, 4 * GB_UTILITY)

    total_segments = sum(segments for _, segments in texts.values())
    month = Month.of(datetime.now(UTC))
    usage = (await platform.http.get("/v1/usage", headers=auth, params={"month": month.label})).json()
    expected_total = {"currency": "EUR", "messages": len(texts), "amount_micros": total_segments * GB_UTILITY}
    assert usage["totals"] == [expected_total]

    reconciled = await billing.reconcile(pool, month)
    assert reconciled.differences == []
    eur = next(a for a in reconciled.amounts if a.currency == "EUR")
    assert eur.ledger_micros == eur.billable_micros
    tenant_ledger = await pool.fetchval(
        "SELECT sum(unit_price_micros * quantity) FROM billing_records WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    assert tenant_ledger == total_segments * GB_UTILITY

    profile = await platform.http.put(
        f"/v1/admin/tenants/{tenant_id}/billing", headers=platform.admin,
        json={"legal_name": "Segments Ltd", "country": "GB", "currency": "EUR"},
    )  # fmt: skip
    assert profile.status_code == 200, profile.text
    invoice = (
        await platform.http.get(f"/v1/admin/invoices/{tenant_id}", headers=platform.admin,
                                params={"month": month.label})
    ).json()
    (line,) = invoice["lines"]
    assert (line["description"], line["quantity"], line["amount_micros"]) == (
        "SMS utility segments to GB", total_segments, total_segments * GB_UTILITY,
    )  # fmt: skip
    assert invoice["ledger_micros"] == total_segments * GB_UTILITY
