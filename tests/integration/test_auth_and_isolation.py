"""Keys, revocation, suspension, and tenant isolation through the real API and database."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import msgspec

from herald.domain import apikeys
from herald_cli.settings import Settings
from tests.integration.harness import Platform


async def test_tenant_cannot_read_another_tenants_message(platform: Platform) -> None:
    _, alice = await platform.tenant_with_key()
    _, bob = await platform.tenant_with_key()
    await platform.template(alice)
    sent = await platform.send(alice)
    message_id = sent.json()["id"]
    await platform.wait_status(alice, message_id)

    r = await platform.http.get(f"/v1/messages/{message_id}", headers=bob)
    assert r.status_code == 404
    assert r.json()["code"] == "message_not_found"
    # ...and not a different answer from a truly unknown id: existence does not leak.
    unknown = await platform.http.get("/v1/messages/01a21f37-0000-7000-8000-000000000000", headers=bob)
    assert unknown.json() == r.json()


async def test_tenant_cannot_see_or_use_another_tenants_templates(api: Platform) -> None:
    _, alice = await api.tenant_with_key()
    _, bob = await api.tenant_with_key()
    await api.template(alice)
    assert (await api.http.get("/v1/templates/otp/en", headers=bob)).status_code == 404
    assert (await api.http.get("/v1/templates", headers=bob)).json() == []
    r = await api.send(bob)
    assert r.status_code == 404
    assert r.json()["code"] == "template_not_found"


async def test_revoked_key_gets_401(api: Platform) -> None:
    tenant = await api.tenant()
    r = await api.http.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=api.admin, json={"kind": "live"})
    key_id, auth = r.json()["id"], {"authorization": f"Bearer {r.json()['key']}"}
    assert (await api.http.get("/v1/templates", headers=auth)).status_code == 200

    revoked = await api.http.delete(f"/v1/admin/tenants/{tenant['id']}/keys/{key_id}", headers=api.admin)
    assert revoked.status_code == 204
    # Other API processes notice within auth_cache_seconds (0.5 s in tests); this one at once.
    await asyncio.sleep(api.settings.api.auth_cache_seconds)
    r = await api.http.get("/v1/templates", headers=auth)
    assert r.status_code == 401
    assert r.json()["code"] == "api_key_revoked"


async def test_wrong_secret_for_a_real_key_id_is_rejected(api: Platform) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant["id"])
    forged = key[: key.rindex("_") + 1] + "A" * 43
    r = await api.http.get("/v1/templates", headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_api_key"


async def test_keys_are_stored_only_as_salted_hashes(api: Platform) -> None:
    tenant = await api.tenant()
    key = await api.key(tenant["id"])
    conn = await asyncpg.connect(api.settings.database.url)
    try:
        rows = await conn.fetch("SELECT salt, hash FROM api_keys WHERE tenant_id = $1::uuid", tenant["id"])
    finally:
        await conn.close()
    assert len(rows) == 1
    parsed = apikeys.parse(key)
    assert parsed is not None
    # What is stored is the salted digest of the secret: not the secret, not an unsalted hash.
    assert rows[0]["hash"] == apikeys.digest(rows[0]["salt"], parsed.secret)
    assert rows[0]["hash"] != hashlib.sha256(parsed.secret.encode()).digest()
    assert len(rows[0]["hash"]) == 32
    assert len(rows[0]["salt"]) == 16


async def test_suspended_tenant_gets_403(api: Platform) -> None:
    tenant_id, auth = await api.tenant_with_key()
    r = await api.http.patch(f"/v1/admin/tenants/{tenant_id}", headers=api.admin, json={"suspended": True})
    assert r.status_code == 200
    assert r.json()["suspended"] is True
    await asyncio.sleep(api.settings.api.auth_cache_seconds + 0.1)
    r = await api.http.get("/v1/templates", headers=auth)
    assert r.status_code == 403
    assert r.json()["code"] == "tenant_suspended"


async def test_admin_endpoints_refuse_tenant_keys_and_bad_tokens(api: Platform) -> None:
    _, auth = await api.tenant_with_key()
    for headers in (auth, {"authorization": "Bearer wrong"}, {}):
        r = await api.http.post("/v1/admin/tenants", headers=headers, json={"name": "x", "tier": "free"})
        assert r.status_code == 401, headers


async def test_patch_tenant_changes_tier_and_limits(api: Platform) -> None:
    tenant = await api.tenant(tier="free", verified=False)
    r = await api.http.patch(
        f"/v1/admin/tenants/{tenant['id']}",
        headers=api.admin,
        json={"tier": "enterprise", "verified": True, "rate_limit_per_second": 250, "daily_recipient_limit": 5000},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tier"], body["verified"], body["rate_limit_per_second"], body["daily_recipient_limit"]) == (
        "enterprise",
        True,
        250,
        5000,
    )
    assert "callback_secret" not in body or body["callback_secret"] is None
    # Past the integer column: a problem naming the field, not a 500 (schemathesis found this).
    too_big = await api.http.patch(
        f"/v1/admin/tenants/{tenant['id']}", headers=api.admin, json={"daily_recipient_limit": 2**31}
    )
    assert too_big.status_code in (400, 422), too_big.text
    assert "daily_recipient_limit" in too_big.text
    assert (
        await api.http.patch(
            "/v1/admin/tenants/01a21f37-0000-7000-8000-000000000000", headers=api.admin, json={"verified": True}
        )
    ).status_code == 404


async def test_each_api_key_is_rate_limited_on_its_own_with_retry_after(settings: Settings) -> None:
    limited = msgspec.structs.replace(settings, api=msgspec.structs.replace(settings.api, key_requests_per_second=5))
    platform = await Platform(limited).start(worker=False, sinks=False, sim=False)
    try:
        _, noisy = await platform.tenant_with_key()
        _, quiet = await platform.tenant_with_key()
        answers = [(await platform.http.get("/v1/limits", headers=noisy)).status_code for _ in range(8)]
        assert answers[:5] == [200] * 5
        assert 429 in answers[5:]
        r = await platform.http.get("/v1/limits", headers=noisy)
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["code"], r.headers["retry-after"]) == ("rate_limited", "1")
        assert (await platform.http.get("/v1/limits", headers=quiet)).status_code == 200  # another key
        await asyncio.sleep(1.1)
        assert (await platform.http.get("/v1/limits", headers=noisy)).status_code == 200  # refilled
    finally:
        await platform.stop()
