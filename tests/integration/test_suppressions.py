"""The suppression list: marketing to a suppressed recipient is refused at accept, per item;
transactional messages go; entries are the tenant's own, kept as keyed hashes."""

from __future__ import annotations

import csv
import io
import uuid

import asyncpg

from herald.kafka.topics import DLQ
from herald_cli.settings import Settings
from tests.integration.harness import Platform, records_on, wait_ledger_rows

PROMO = {"template": {"name": "promo", "language": "en"}, "params": {"pct": "20"}}


async def _tenant(platform: Platform) -> tuple[str, dict[str, str]]:
    tenant_id, auth = await platform.tenant_with_key(tier="standard")
    await platform.template(auth, name="promo", body="Sale: {{pct}}% off", category="marketing")
    await platform.template(auth, name="notice", body="Flight {{code}} moved", category="utility")
    return tenant_id, auth


async def test_a_suppressed_recipient_gets_no_marketing_but_its_transactional_messages(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id, auth = await _tenant(platform)
    _, other = await _tenant(platform)
    number = "+447400555127"
    added = await platform.http.post("/v1/suppressions", headers=auth, json={"channel": "sms", "recipient": number})
    assert added.status_code == 201, added.text
    entry = added.json()
    assert (entry["channel"], entry["hint"], entry["reason"]) == ("sms", "+44•••••••127", "added")
    again = await platform.http.post("/v1/suppressions", headers=auth, json={"channel": "sms", "recipient": number})
    assert (again.status_code, again.json()) == (200, entry)  # idempotent: the first entry stands

    refused = await platform.send(auth, to=number, **PROMO)
    assert refused.status_code == 422
    assert (refused.json()["code"], refused.json()["errors"][0]["field"]) == ("recipient_suppressed", "to")
    utility = await platform.send(
        auth, to=number, template={"name": "notice", "language": "en"}, params={"code": "BA117"}
    )
    assert utility.status_code == 202, utility.text
    # Per item in a batch; another tenant's list is its own.
    batch = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": [
        {"to": number, "channel": "sms", **PROMO}, {"to": "+447400555137", "channel": "sms", **PROMO},
    ]})  # fmt: skip
    results = batch.json()["results"]
    assert (batch.json()["accepted"], results[0]["error"]["code"], "id" in results[1]) == (
        1, "recipient_suppressed", True,
    )  # fmt: skip
    assert (await platform.send(other, to=number, **PROMO)).status_code == 202
    foreign = await platform.http.delete(f"/v1/suppressions/{entry['id']}", headers=other)
    assert (foreign.status_code, foreign.json()["code"]) == (404, "suppression_not_found")

    # Kept as a keyed hash: the number is nowhere in the table.
    rows = await pool.fetch("SELECT * FROM suppressions WHERE tenant_id = $1", uuid.UUID(tenant_id))
    assert len(rows) == 1
    assert number not in repr(dict(rows[0]))
    assert number[1:] not in repr(dict(rows[0]))

    lookup = await platform.http.post("/v1/suppressions/lookup", headers=auth,
                                      json={"channel": "sms", "recipient": number})  # fmt: skip
    assert (lookup.status_code, lookup.json()["id"]) == (200, entry["id"])
    lifted = await platform.http.delete(f"/v1/suppressions/{entry['id']}", headers=auth)
    assert lifted.status_code == 204
    assert (await platform.send(auth, to=number, **PROMO)).status_code == 202
    missing = await platform.http.post("/v1/suppressions/lookup", headers=auth,
                                       json={"channel": "sms", "recipient": number})  # fmt: skip
    assert (missing.status_code, missing.json()["code"]) == (404, "suppression_not_found")


async def test_a_csv_import_is_all_or_nothing_pages_by_cursor_and_exports_without_recipients(
    platform: Platform,
) -> None:
    _, auth = await _tenant(platform)
    csv_headers = {**auth, "content-type": "text/csv"}
    numbers = [f"+447400{n:05d}7" for n in range(25)]
    bad = "channel,recipient\nsms,+447400000017\nsms,not-a-number\nfax,+447400000027\n"
    refused = await platform.http.post("/v1/suppressions/import", headers=csv_headers, content=bad)
    assert refused.status_code == 422
    assert (refused.json()["code"], [e["field"] for e in refused.json()["errors"]]) == (
        "invalid_csv", ["rows[1].recipient", "rows[2].channel"],
    )  # fmt: skip
    assert (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"] == []  # nothing imported

    good = "recipient,channel,note\n" + "".join(f"{n},sms,from the CRM\n" for n in numbers) + f"{numbers[0]},sms,x\n"
    imported = await platform.http.post("/v1/suppressions/import", headers=csv_headers, content=good)
    assert (imported.status_code, imported.json()) == (200, {"rows": 26, "added": 25})
    wrong_type = await platform.http.post("/v1/suppressions/import", headers=auth, content=good)
    assert (wrong_type.status_code, wrong_type.json()["code"]) == (422, "invalid_csv")

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "10", **({"after": after} if after else {})}
        page = (await platform.http.get("/v1/suppressions", headers=auth, params=params)).json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        if (after := page.get("next")) is None:
            break
    assert (pages, len(seen), len(set(seen))) == (3, 25, 25)
    for cursor in ("sms:not-hex", "fax:" + "0" * 64, "garbage"):  # once a 500 (found by the fuzzer)
        bad_cursor = await platform.http.get("/v1/suppressions", headers=auth, params={"after": cursor})
        assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (422, "validation_failed")
        assert [e["field"] for e in bad_cursor.json()["errors"]] == ["after"]
    assert {item["reason"] for item in page["items"]} == {"imported"}

    export = await platform.http.get("/v1/suppressions/export", headers=auth)
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert sorted(r["id"] for r in rows) == sorted(seen)
    assert not any(n in export.text or n[1:] in export.text for n in numbers)
    refused_send = await platform.send(auth, to=numbers[7], **PROMO)
    assert refused_send.json()["code"] == "recipient_suppressed"


async def test_marketing_that_waited_while_its_recipient_was_suppressed_fails_unsent_and_unbilled(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Accepted, then queued (here: no worker yet, as behind a campaign's backlog) while the
    recipient is suppressed: the worker asks the list again and sends none of it."""
    platform = await Platform(settings).start(worker=False)
    try:
        _, auth = await _tenant(platform)
        number, other = "+447400555147", "+447400555157"
        waiting = [await platform.send(auth, to=number, **PROMO) for _ in range(2)]
        utility = await platform.send(auth, to=number, template={"name": "notice", "language": "en"},
                                      params={"code": "BA117"})  # fmt: skip
        unrelated = await platform.send(auth, to=other, **PROMO)
        assert all(r.status_code == 202 for r in (*waiting, utility, unrelated))
        added = await platform.http.post("/v1/suppressions", headers=auth, json={"channel": "sms", "recipient": number})
        assert added.status_code == 201, added.text

        platform.add_worker()
        for r in waiting:
            message = await platform.wait_status(auth, r.json()["id"], {"failed"})
            assert message["events"][-1]["detail"] == "recipient_suppressed", message
            assert "sent" not in {e["status"] for e in message["events"]}
        for r in (utility, unrelated):
            assert (await platform.wait_status(auth, r.json()["id"], {"delivered"}))["status"] == "delivered"
        assert set(platform.sim_sends()) == {utility.json()["id"], unrelated.json()["id"]}
        await wait_ledger_rows(pool, 2)
        billed = {str(r["message_id"]) for r in await pool.fetch("SELECT message_id FROM billing_records")}
        assert billed == {utility.json()["id"], unrelated.json()["id"]}
        assert await records_on(platform.settings, DLQ) == 0  # the outcome asked for: nothing to replay
    finally:
        await platform.stop()
