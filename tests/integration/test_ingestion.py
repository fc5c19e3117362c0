"""Issue #3: batches with per-item results, idempotency keys, daily recipient limits per tier."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.integration.harness import Platform


def item(to: str = "+447400123456", **extra: Any) -> dict[str, Any]:
    return {"to": to, "channel": "sms", "template": {"name": "otp", "language": "en"}, "params": {"code": "1"}, **extra}


async def _count(platform: Platform, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(platform.settings.database.url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_batch_reports_each_item_at_its_index(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth)
    items = [
        item("+447400100010"),
        item("+4474001"),  # bad number
        item("+447400100011", params={}),  # missing param
        item("+447400100012", surprise=1),  # unknown field
        item("+447400100013", template={"name": "nope", "language": "en"}),
        {"to": 5},  # wrong type, missing fields
        item("+4915112345678"),
    ]
    r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": items})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 5)
    results = body["results"]
    assert [x["index"] for x in results] == list(range(7))
    assert [("id" in x) for x in results] == [True, False, False, False, False, False, True]
    errors = {x["index"]: x["error"] for x in results if "error" in x}
    assert (errors[1]["code"], errors[1]["fields"]) == ("invalid_recipient", ["to"])
    assert (errors[2]["code"], errors[2]["fields"]) == ("params_missing", ["params.code"])
    assert (errors[3]["code"], errors[3]["fields"]) == ("validation_failed", ["surprise"])
    assert errors[4]["code"] == "template_not_found"
    assert errors[5]["code"] == "validation_failed"
    for ok in (results[0], results[6]):
        assert (await platform.wait_status(auth, ok["id"]))["status"] == "delivered"
    # Invalid items changed nothing: only the two valid messages exist.
    assert await _count(platform, "SELECT count(*) FROM messages") == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [item() for _ in range(1001)]}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "x"}, "messages"),
        ({"items": [item()]}, "items"),
    ],
)
async def test_malformed_batch_is_rejected_whole(api: Platform, body: dict[str, Any], field: str) -> None:
    _, auth = await api.tenant_with_key()
    await api.template(auth)
    r = await api.http.post("/v1/messages/batch", headers=auth, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_idempotent_repeats_get_one_id_and_one_delivery(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth)
    first = await platform.send(auth, to="+447400100020", idempotency_key="order-1")
    second = await platform.send(auth, to="+447400100020", idempotency_key="order-1")
    # Concurrent repeats, racing each other and the first two through the pipeline:
    concurrent = await asyncio.gather(
        *(platform.send(auth, to="+447400100020", idempotency_key="order-1") for _ in range(10))
    )
    batch = await platform.http.post(
        "/v1/messages/batch", headers=auth,
        json={"messages": [item("+447400100020", idempotency_key="order-1") for _ in range(3)]},
    )  # fmt: skip
    ids = {first.json()["id"], second.json()["id"], *(r.json()["id"] for r in concurrent)}
    ids |= {x["id"] for x in batch.json()["results"]}
    assert len(ids) == 1
    message = await platform.wait_history(auth, ids.pop(), ["accepted", "sent", "delivered"])
    await asyncio.sleep(0.5)  # time for any duplicate delivery to show up
    assert platform.sim_sends()[message["id"]] == 1
    again = await platform.http.get(f"/v1/messages/{message['id']}", headers=auth)
    assert [e["status"] for e in again.json()["events"]] == ["accepted", "sent", "delivered"]
    # A different key is a different message.
    other = await platform.send(auth, to="+447400100020", idempotency_key="order-2")
    assert other.json()["id"] != message["id"]


async def test_idempotency_is_per_tenant(api: Platform) -> None:
    _, alice = await api.tenant_with_key()
    _, bob = await api.tenant_with_key()
    await api.template(alice)
    await api.template(bob)
    a = await api.send(alice, idempotency_key="same")
    b = await api.send(bob, idempotency_key="same")
    assert a.json()["id"] != b.json()["id"]


async def test_idempotent_repeat_at_another_api_process(platform: Platform) -> None:
    """A second API app (another process in production) derives the same id with no shared state."""
    import httpx

    from herald.embedded import free_port
    from herald_api.app import create_app
    from tests.integration.harness import Served

    _, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth)
    port = free_port()
    other = Served(create_app(platform.settings), port)
    await other.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            a, b = await asyncio.gather(
                platform.send(auth, to="+447400100030", idempotency_key="k-77"),
                http.post("/v1/messages", headers=auth, json=item("+447400100030", idempotency_key="k-77")),
            )
    finally:
        await other.stop()
    assert a.json()["id"] == b.json()["id"]
    await platform.wait_status(auth, a.json()["id"], {"delivered"})
    await asyncio.sleep(0.5)
    assert platform.sim_sends()[a.json()["id"]] == 1


async def test_daily_recipient_limit_per_item_with_retry_after(api: Platform) -> None:
    tenant_id, auth = await api.tenant_with_key(tier="free")
    await api.template(auth)
    await api.patch_tenant(tenant_id, daily_recipient_limit=3)
    await asyncio.sleep(api.settings.api.auth_cache_seconds + 0.1)
    batch = [item(f"+4474001000{i:02d}") for i in (10, 11, 10, 12, 13, 14)]
    r = await api.http.post("/v1/messages/batch", headers=auth, json={"messages": batch})
    results = r.json()["results"]
    # Three distinct recipients fit; a repeat of an admitted one is free; the 4th and 5th are refused.
    assert [("id" in x) for x in results] == [True, True, True, True, False, False]
    refused = results[4]["error"]
    assert refused["code"] == "daily_recipient_limit"
    assert 0 < refused["retry_after"] <= 24 * 3600
    single = await api.send(auth, to="+447400100015")
    assert single.status_code == 429
    assert single.json()["code"] == "daily_recipient_limit"
    assert int(single.headers["retry-after"]) > 0
    assert (await api.send(auth, to="+447400100011")).status_code == 202  # already counted today
    limits = (await api.http.get("/v1/limits", headers=auth)).json()
    assert limits == {
        "tier": "free", "verified": True, "rate_per_second": 10, "daily_recipient_limit": 3,
        "recipients_used_24h": 3, "recipients_remaining_24h": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tier", "verified", "daily", "rate"),
    [("free", True, 1000, 10), ("standard", True, 100_000, 80), ("enterprise", True, None, 1000),
     ("enterprise", False, 250, 1000), ("standard", False, 250, 80)],
)  # fmt: skip
async def test_limits_reflect_tier_and_verification(
    api: Platform, tier: str, verified: bool, daily: int | None, rate: int
) -> None:
    _, auth = await api.tenant_with_key(tier=tier, verified=verified)
    limits = (await api.http.get("/v1/limits", headers=auth)).json()
    assert (limits["daily_recipient_limit"], limits["rate_per_second"]) == (daily, rate)
    assert limits["recipients_remaining_24h"] == daily


async def test_unverified_cap_is_enforced(api: Platform) -> None:
    """250 unique recipients for unverified tenants, whatever the tier: the 251st is refused."""
    _, auth = await api.tenant_with_key(tier="enterprise", verified=False)
    await api.template(auth)
    first = [item(f"+447400{100100 + i}") for i in range(250)]
    r = await api.http.post("/v1/messages/batch", headers=auth, json={"messages": first})
    assert r.json()["accepted"] == 250
    r = await api.send(auth, to="+447400109999")
    assert (r.status_code, r.json()["code"]) == (429, "daily_recipient_limit")


async def test_refused_items_are_not_produced(platform: Platform) -> None:
    tenant_id, auth = await platform.tenant_with_key(tier="free")
    await platform.template(auth)
    await platform.patch_tenant(tenant_id, daily_recipient_limit=1)
    await asyncio.sleep(platform.settings.api.auth_cache_seconds + 0.1)
    r = await platform.http.post(
        "/v1/messages/batch", headers=auth, json={"messages": [item("+447400100040"), item("+447400100041")]}
    )
    ok = r.json()["results"][0]["id"]
    await platform.wait_status(auth, ok)
    assert await _count(platform, "SELECT count(*) FROM messages WHERE tenant_id = $1::uuid", tenant_id) == 1
