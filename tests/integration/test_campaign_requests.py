"""The campaign API's boundary: files in both formats, refusals that change nothing, the estimate's
refusals at start, `send_at`. The API alone (its producer queues; no worker sends)."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.eventually import eventually
from tests.integration.harness import Platform

PROMO = {"name": "sale", "body": "Hi {{name}}, {{pct}}% off today. Reply STOP to opt out", "category": "marketing"}
PARQUET = "application/vnd.apache.parquet"


def _to(n: int) -> str:
    return f"+44780{n:06d}7"


def _csv(n: int, header: str = "to,name,pct") -> bytes:
    return (header + "\r\n" + "".join(f"{_to(i)},Dee,{i % 90}\r\n" for i in range(1, n + 1))).encode()


async def _setup(api: Platform, **tenant: Any) -> tuple[str, dict[str, str]]:
    tenant_id, auth = await api.tenant_with_key(tier="enterprise", **tenant)
    await api.template(auth, channel="sms", **PROMO)
    return tenant_id, auth


async def _create(api: Platform, auth: dict[str, str], **fields: Any) -> str:
    body = {"name": "q4", "template": {"name": "sale", "language": "en"}, **fields}
    r = await api.http.post("/v1/campaigns", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _put(api: Platform, auth: dict[str, str], cid: str, body: bytes, media: str = "text/csv") -> Any:
    return await api.http.put(f"/v1/campaigns/{cid}/recipients", headers={**auth, "content-type": media},
                              content=body)  # fmt: skip


async def test_a_parquet_file_with_typed_columns_is_read_as_text_rows(api: Platform) -> None:
    # pyarrow.parquet.write_table, as a data team exports a table; `pct` is an integer column.
    _, auth = await _setup(api)
    cid = await _create(api, auth)
    table = pa.table({"to": [_to(i) for i in range(1, 501)], "name": ["Eve"] * 500, "pct": list(range(500)),
                      "reference": [f"order-{i}" for i in range(500)]})  # fmt: skip
    table = table.set_column(0, "to", pa.array([*[_to(i) for i in range(1, 500)], "not a number"]))
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=128)
    r = await _put(api, auth, cid, out.getvalue(), PARQUET)
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {**r.json()["counts"], "rows": 500, "rejected": 1}
    rejections = (await api.http.get(f"/v1/campaigns/{cid}/rejections", headers=auth)).text
    assert rejections.splitlines() == ["row,code,field", "500,invalid_recipient,to"]
    scraped = (await api.http.get("/metrics")).text
    for outcome in ("kept", "refused_at_upload"):
        assert re.search(rf'^herald_campaign_rows_total\{{outcome="{outcome}"\}} [1-9]', scraped, re.M), outcome


async def test_files_refused_whole_change_nothing_and_name_the_problem(api: Platform) -> None:
    _, auth = await _setup(api)
    cid = await _create(api, auth)
    assert (await _put(api, auth, cid, _csv(10))).status_code == 200
    cases = [
        (_csv(3, header="phone,name,pct"), "text/csv", 422, "recipients_invalid", "recipients"),
        (_csv(3, header="to,name,name"), "text/csv", 422, "recipients_invalid", "recipients.name"),
        (b"to,name,pct\r\n\xff\xfe,Dee,1\r\n", "text/csv", 422, "recipients_invalid", "recipients"),
        (b'to,name,pct\r\n"+447800000017,Dee,1\r\n', "text/csv", 422, "recipients_invalid", "recipients"),
        (b"", "text/csv", 422, "recipients_invalid", "recipients"),
        (b"PAR1 not really", PARQUET, 422, "recipients_invalid", "recipients"),
        (_csv(3), "application/json", 415, "unsupported_media_type", "content-type"),
    ]
    for body, media, status, code, field in cases:
        r = await _put(api, auth, cid, body, media)
        assert r.status_code == status, (body[:40], r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code, r.text
        assert field in [f["field"] for f in r.json().get("errors", [])] or field in r.text, r.text
        counts = (await api.http.get(f"/v1/campaigns/{cid}", headers=auth)).json()["counts"]
        assert counts["rows"] == 10, "a refused file leaves the rows uploaded before"


async def test_another_tenants_campaign_is_not_found_and_states_refuse_what_they_cannot_do(api: Platform) -> None:
    _, auth = await _setup(api)
    _, other = await _setup(api)
    cid = await _create(api, auth)
    for method, path in (("GET", ""), ("GET", "/estimate"), ("GET", "/rejections"), ("POST", "/start"),
                         ("POST", "/cancel"), ("PUT", "/recipients")):  # fmt: skip
        r = await api.http.request(method, f"/v1/campaigns/{cid}{path}", headers={**other, "content-type": "text/csv"},
                                   content=_csv(1) if method == "PUT" else None)  # fmt: skip
        assert r.status_code == 404, (path, r.text)
        assert r.json()["code"] == "campaign_not_found"
    r = await api.http.post(f"/v1/campaigns/{cid}/start", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "campaign_empty"
    r = await api.http.post(f"/v1/campaigns/{cid}/resume", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "campaign_state"
    assert (await api.http.post(f"/v1/campaigns/{cid}/cancel", headers=auth)).json()["state"] == "cancelled"
    r = await _put(api, auth, cid, _csv(2))
    assert r.status_code == 409
    assert r.json()["code"] == "campaign_state"
    unknown = {"name": "x", "template": {"name": "nope", "language": "en"}}
    r = await api.http.post("/v1/campaigns", headers=auth, json=unknown)
    assert r.status_code == 404
    assert r.json()["code"] == "template_not_found"


async def test_start_is_refused_with_the_figures_when_the_tail_would_expire_or_pass_the_daily_limit(
    api: Platform,
) -> None:
    tenant_id, auth = await _setup(api)
    await api.patch_tenant(tenant_id, rate_limit_per_second=2, daily_recipient_limit=30)
    await asyncio.sleep(api.settings.api.auth_cache_seconds + 0.2)  # the key's cached tenant is read again
    slow = await _create(api, auth, ttl_seconds=10)
    assert (await _put(api, auth, slow, _csv(20))).status_code == 200
    estimate = (await api.http.get(f"/v1/campaigns/{slow}/estimate", headers=auth)).json()
    assert estimate["rate_per_second"] == 1.6  # campaigns.rate_share (80%) of 2/s
    assert estimate["send_seconds"] == 12.5
    assert estimate["outlasts_ttl"] is True
    r = await api.http.post(f"/v1/campaigns/{slow}/start", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "campaign_outlasts_ttl"
    assert "12 s" in r.json()["detail"]
    assert (await api.http.get(f"/v1/campaigns/{slow}", headers=auth)).json()["state"] == "draft"

    many = await _create(api, auth)
    assert (await _put(api, auth, many, _csv(40))).status_code == 200
    estimate = (await api.http.get(f"/v1/campaigns/{many}/estimate", headers=auth)).json()
    assert estimate["new_recipients"] == 40
    assert estimate["over_daily_limit"] is True
    r = await api.http.post(f"/v1/campaigns/{many}/start", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "campaign_over_daily_limit"
    r = await api.http.post(f"/v1/campaigns/{many}/start", headers=auth, json={"accept_tail": True})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "sending"


async def test_a_campaign_with_send_at_waits_scheduled_then_sends_on_time(api: Platform) -> None:
    _, auth = await _setup(api)
    at = datetime.now(UTC) + timedelta(seconds=3)
    cid = await _create(api, auth, send_at=at.isoformat())
    assert (await _put(api, auth, cid, _csv(5))).status_code == 200
    r = await api.http.post(f"/v1/campaigns/{cid}/start", headers=auth)
    assert r.json()["state"] == "scheduled"

    async def read() -> dict[str, Any]:
        return dict((await api.http.get(f"/v1/campaigns/{cid}", headers=auth)).json())

    done = await eventually(read, lambda c: c["state"] == "completed", "sent at its time", seconds=15)
    assert done["counts"]["accepted"] == 5
    started = datetime.fromisoformat(done["finished_at"])
    assert at <= started < at + timedelta(seconds=2), (at, started)
